// Package proctest holds what tests that run the platform's processes share:
// the tail of a child process's log to print when a test fails, a free
// loopback address, and a GET that fails the test on a transport error.
//
//	logs := &proctest.TailBuffer{Max: 64 << 10}
//	cmd.Stderr = logs
//	addr := proctest.FreeAddr(t)
//	status, body := proctest.Get(t, "http://"+addr+"/readyz")
package proctest
