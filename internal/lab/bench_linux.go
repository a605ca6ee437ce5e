package lab

// AgentPID returns the pid of a host's agent while it runs, for the
// benchmarks' CPU and memory readings (/proc/PID/stat, /proc/PID/status).
func (l *Lab) AgentPID(host string) (int, bool) {
	c := l.agent(host)
	if c == nil {
		return 0, false
	}
	select {
	case <-c.exited:
		return 0, false
	default:
		return c.pid, true
	}
}
