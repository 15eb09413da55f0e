//go:build linux && !amd64

package seal

// openAMD64 is empty: other architectures have no open(2).
var openAMD64 []watched
