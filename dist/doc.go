// Package dist holds the files that install weft on a host: a systemd unit
// and its EnvironmentFile, a docker.service drop-in, a supervisord program
// and an iproute2 protocol name. There is no Go code here; the package's
// tests check that the files agree with the binary (flags, paths, variable
// names, the route protocol) and that systemd accepts them.
package dist
