package tuntest

import (
	"errors"
	"os"
	"testing"
)

func TestReadDrainsWhatIsQueuedAndCloseUnblocks(t *testing.T) {
	d := New("tun0", 1400, 4)
	d.Inbound <- []byte{1}
	d.Inbound <- []byte{2, 2}
	bufs := [][]byte{make([]byte, 8), make([]byte, 8), make([]byte, 8)}
	sizes := make([]int, 3)
	n, err := d.Read(bufs, sizes, 4)
	if err != nil || n != 2 || sizes[0] != 1 || sizes[1] != 2 || bufs[1][4] != 2 {
		t.Fatalf("Read = %d, %v, sizes %v, bufs %v; want both queued packets after the headroom", n, err, sizes, bufs)
	}
	if n, err := d.Write([][]byte{{0, 0, 9}}, 2); n != 1 || err != nil || (<-d.Outbound)[0] != 9 {
		t.Fatalf("Write = %d, %v; want the packet after the headroom on Outbound", n, err)
	}
	done := make(chan error)
	go func() {
		_, err := d.Read(bufs, sizes, 0)
		done <- err
	}()
	d.Close()
	d.Close()
	if err := <-done; !errors.Is(err, os.ErrClosed) {
		t.Errorf("Read after Close = %v, want os.ErrClosed", err)
	}
}
