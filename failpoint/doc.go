// Package failpoint names the agent's durable-write boundaries so that crash
// tests can kill the agent exactly there.
//
// In a release build (no build tag) Hit is an empty function the compiler
// removes: no failpoint name, no environment variable, no code. Built with
// -tags failpoints, Hit reads TERMAGENT_FAILPOINT once, as
//
//	name[@n]
//
// and the n-th time (default 1st) the named point is reached the process
// kills itself with SIGKILL, as a power cut or kill -9 would.
package failpoint
