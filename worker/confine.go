package worker

// Confinement is what a worker process may still reach once it has
// started: the bus, and the files of its grant. Everything else — every
// other file, every other TCP port, signals to other processes — is
// refused by the kernel where it offers Landlock.
//
// A worker confines itself after it has read its configuration and opened
// its data, and before it serves its first call: whatever a call does to
// it, it can do no more than this.
type Confinement struct {
	// NATSPort is the TCP port of the bus; the only port the worker may
	// connect to.
	NATSPort uint16
	// RO and RW are directories the worker may read, or read and write.
	RO, RW []string
	// ROFiles are single files the worker may read (an MCP server's
	// executable, the loader's cache).
	ROFiles []string
}
