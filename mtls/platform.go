package mtls

import "runtime"

// windows reports whether POSIX permission bits are meaningless for key files.
func windows() bool { return runtime.GOOS == "windows" }
