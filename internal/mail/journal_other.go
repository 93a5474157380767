//go:build !unix

package mail

import "os"

// lockFile does nothing where flock is not available: do not run two sends
// on one journal there.
func lockFile(*os.File) error { return nil }
