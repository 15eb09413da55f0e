// Package e2e builds the sluice binary and runs it as a user would: real
// processes, a real embedded NATS server, real HTTP on loopback. Its tests
// are the package; see main_test.go.
package e2e
