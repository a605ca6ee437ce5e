// Package kerneltest is a recording fake of kernel.Handle, for unit tests
// of backend orchestration without root: which entries a backend programs,
// in what order, what it reads back, and how it repairs what someone else
// deleted. It keeps links, addresses, neighbours, FDB entries and main-table
// routes in memory with the kernel's replace/delete semantics that the
// backends rely on (replace by key, ENOENT/ESRCH/EADDRNOTAVAIL for what is
// already gone, a deleted link taking its entries with it). It does not
// check reachability: a gateway is accepted whether or not a link reaches
// it, unless a test makes the call fail. It is Linux-only, like the code
// it stands in for.
package kerneltest
