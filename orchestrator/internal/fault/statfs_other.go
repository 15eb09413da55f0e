//go:build !unix

package fault

func freeSpace(string) string { return "" }
