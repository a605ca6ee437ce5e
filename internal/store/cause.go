package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"syscall"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// ErrUnreachable is wrapped by a store that knows its server could not be
// reached (no connection, rather than a slow answer).
var ErrUnreachable = errors.New("store unreachable")

// ErrInvalidConfig is wrapped by Config when the stored network config
// does not parse or names something this agent cannot run.
var ErrInvalidConfig = errors.New("invalid network config")

// Cause is what kind of trouble a store error is, for logs, metrics and
// /readyz: each calls for a different fix by a different person.
type Cause string

// The causes, also the label values of weft_store_trouble_total.
const (
	CauseUnreachable   Cause = "unreachable"    // network, server down, DNS
	CauseTimeout       Cause = "timeout"        // connected, but no answer in time
	CauseTLS           Cause = "tls"            // TLS handshake or certificate
	CauseAuth          Cause = "auth"           // credentials refused
	CausePermission    Cause = "permission"     // authenticated, but not allowed
	CauseNoConfig      Cause = "no-config"      // no network config stored
	CauseInvalidConfig Cause = "invalid-config" // network config stored but unusable
	CauseOther         Cause = "other"
)

// Causes lists every Cause, for metrics that show each from the start.
var Causes = []Cause{CauseUnreachable, CauseTimeout, CauseTLS, CauseAuth, CausePermission,
	CauseNoConfig, CauseInvalidConfig, CauseOther}

// Phrase is the cause in words, the start of a sentence about it.
func (c Cause) Phrase() string {
	switch c {
	case CauseUnreachable:
		return "store unreachable"
	case CauseTimeout:
		return "store did not answer in time"
	case CauseTLS:
		return "TLS with the store failed (check the CA, certificate and key files and the endpoints' scheme)"
	case CauseAuth:
		return "the store refused this agent's credentials"
	case CausePermission:
		return "the store denied this agent access"
	case CauseNoConfig:
		return "no network config in the store"
	case CauseInvalidConfig:
		return "the network config in the store is invalid"
	default:
		return "store error"
	}
}

// Explain is a one-line human sentence for err: its cause's phrase, then
// the error itself, which names what was being done and where.
func Explain(err error) string {
	return Classify(err).Phrase() + ": " + err.Error()
}

// Classify says what kind of trouble err is. It understands the errors of
// both stores: the etcd client's (gRPC status codes, etcd's own error
// values), the Kubernetes API's (status errors), network and TLS errors,
// and this package's sentinels. Anything else is CauseOther.
func Classify(err error) Cause {
	if err == nil {
		return ""
	}
	// Order matters: the more specific and more actionable first. A
	// config error may wrap an unrelated one, a timeout may wrap the
	// connection error that explains it.
	switch {
	case errors.Is(err, ErrNoConfig):
		return CauseNoConfig
	case errors.Is(err, ErrInvalidConfig):
		return CauseInvalidConfig
	case isAuth(err):
		return CauseAuth
	case isPermission(err):
		return CausePermission
	case isTLS(err):
		return CauseTLS
	case errors.Is(err, ErrUnreachable), isUnreachable(err):
		return CauseUnreachable
	case isTimeout(err):
		return CauseTimeout
	}
	return CauseOther
}

func isAuth(err error) bool {
	for _, e := range []error{rpctypes.ErrAuthFailed, rpctypes.ErrInvalidAuthToken, rpctypes.ErrInvalidAuthMgmt,
		rpctypes.ErrAuthOldRevision, rpctypes.ErrUserNotFound, rpctypes.ErrUserEmpty} {
		if errors.Is(err, e) {
			return true
		}
	}
	return apierrors.IsUnauthorized(err) || grpcCode(err) == codes.Unauthenticated
}

func isPermission(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) ||
		apierrors.IsForbidden(err) || grpcCode(err) == codes.PermissionDenied
}

func isTLS(err error) bool {
	var (
		unknownCA *x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		alert     tls.AlertError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &invalid) || errors.As(err, &hostname) ||
		errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &alert) {
		return true
	}
	// gRPC hands connection errors over as text inside a status.
	msg := err.Error()
	return strings.Contains(msg, "authentication handshake failed") || strings.Contains(msg, "x509: ") ||
		strings.Contains(msg, "tls: ")
}

func isUnreachable(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, rpctypes.ErrNoLeader) {
		return true
	}
	var dns *net.DNSError
	var op *net.OpError
	if errors.As(err, &dns) || (errors.As(err, &op) && op.Op == "dial") {
		return true
	}
	if grpcCode(err) == codes.Unavailable || apierrors.IsServiceUnavailable(err) {
		return true
	}
	// gRPC's connection errors are text: "connection error: desc =
	// \"transport: Error while dialing: dial tcp ...: connect: connection
	// refused\"".
	msg := err.Error()
	for _, s := range []string{"connection refused", "no route to host", "network is unreachable",
		"connection error", "error while dialing", "no such host", "connection reset"} {
		if strings.Contains(strings.ToLower(msg), s) {
			return true
		}
	}
	return false
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) ||
		grpcCode(err) == codes.DeadlineExceeded || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// grpcCode is the gRPC status code anywhere in err's chain, or OK.
func grpcCode(err error) codes.Code {
	var s interface{ GRPCStatus() *status.Status }
	if errors.As(err, &s) {
		return s.GRPCStatus().Code()
	}
	return codes.OK
}
