package web

import (
	"sync"
	"time"
)

// Event kinds shown on the page.
const (
	EventJoin   = "join"   // a peer's lease appeared
	EventChange = "change" // a peer's lease changed (new PublicIP, VTEP MAC)
	EventLeave  = "leave"  // a peer's lease went away
	EventRepair = "repair" // the reconciler restored kernel state or rules
	EventStore  = "store"  // the store became unreachable, or reachable again
	// EventRefused: a lease started or stopped being refused as a peer.
	EventRefused = "refused"
	// EventConfig: what the network config asks for that this agent does
	// not do (IPv6 before the IPv6 data plane), and another network's CNI
	// config taking this node's pods.
	EventConfig = "config"
)

// Event is one thing that happened to this host's view of the fabric.
type Event struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
}

// Events keeps the newest events in a fixed-size ring, so a flapping peer
// or a repair loop cannot grow the agent's memory. The zero value holds
// DefaultEvents; it is safe for concurrent use.
type Events struct {
	mu   sync.Mutex
	Max  int // capacity; 0 means DefaultEvents. Set before first use.
	ring []Event
	next int // where the next event goes once the ring is full
}

// DefaultEvents is how many events a zero Events keeps.
const DefaultEvents = 50

// Add records an event.
func (e *Events) Add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.Max
	if n <= 0 {
		n = DefaultEvents
	}
	if len(e.ring) < n {
		e.ring = append(e.ring, ev)
		return
	}
	e.ring[e.next] = ev
	e.next = (e.next + 1) % n
}

// List returns the events, newest first.
func (e *Events) List() []Event {
	if e == nil {
		return []Event{}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, 0, len(e.ring))
	for i := range e.ring {
		// Walk backwards from the newest, which sits just before next.
		j := (e.next - 1 - i + 2*len(e.ring)) % len(e.ring)
		out = append(out, e.ring[j])
	}
	return out
}
