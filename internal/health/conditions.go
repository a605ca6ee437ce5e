package health

import (
	"slices"
	"strings"
)

// SetCondition records (reason != "") or clears (reason == "") a standing
// problem named by source ("peers", say). While any condition is set the
// agent is not ready, whatever SetReady says: each source clears its own,
// so that one loop coming back (the store reachable again) does not hide
// another's problem (no peer programmable).
func (s *Status) SetCondition(source, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason == "" {
		delete(s.conds, source)
		return
	}
	if s.conds == nil {
		s.conds = make(map[string]string)
	}
	s.conds[source] = reason
}

// condReasons joins the conditions' reasons in source order. Callers hold
// mu.
func (s *Status) condReasons() string {
	keys := make([]string, 0, len(s.conds))
	for k := range s.conds {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	rs := make([]string, len(keys))
	for i, k := range keys {
		rs[i] = s.conds[k]
	}
	return strings.Join(rs, "; ")
}
