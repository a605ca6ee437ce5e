package faults

import (
	"testing"
	"time"
)

func TestReplyTimes(t *testing.T) {
	out := []byte("PING 172.7.1.2 (172.7.1.2) 56(84) bytes of data.\n" +
		"[1700000000.100000] 64 bytes from 172.7.1.2: icmp_seq=1 ttl=62 time=0.1 ms\n" +
		"[1700000000.5] 64 bytes from 172.7.1.2: icmp_seq=2 ttl=62 time=0.1 ms (DUP!)\n" +
		"[1700000001.250000] 64 bytes from 172.7.1.2: icmp_seq=3 ttl=62 time=0.1 ms\n")
	ts := replyTimes(out)
	if len(ts) != 2 {
		t.Fatalf("replyTimes = %v, want 2 stamps (the DUP! skipped)", ts)
	}
	if g := ts[1].Sub(ts[0]); g != 1150*time.Millisecond {
		t.Errorf("gap = %v, want 1.15s", g)
	}
}
