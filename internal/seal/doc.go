// Package seal shuts a worker process off the network for the rest of its
// life, with a seccomp filter, once it holds its one connection to the
// bus; and it is the supervisor's side of that filter: each socket(2) a
// sealed worker tries, and each file it opens outside its roots, is put to
// the supervisor, which records the attempt.
//
// Both the worker (which seals itself) and the orchestrator's supervisor
// (which listens) use it, and neither imports the other: it sits below
// both, as the import table (e2e/imports_test.go) requires.
package seal
