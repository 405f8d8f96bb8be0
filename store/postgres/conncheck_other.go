//go:build !unix || aix

package postgres

import "net"

// sockPeeker cannot look at a socket without reading on this platform: the
// pool behaves as pgxpool does by default (see conncheck.go).
type sockPeeker struct{}

func newSockPeeker(net.Conn) *sockPeeker { return nil }

func (*sockPeeker) peek() connState { return connUnknown }
