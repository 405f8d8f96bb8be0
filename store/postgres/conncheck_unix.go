//go:build unix && !aix

package postgres

import (
	"net"
	"syscall"
)

// sockPeeker looks at one connection's socket without reading from it:
// recv with MSG_PEEK|MSG_DONTWAIT never blocks and leaves any bytes for
// pgconn. It goes through RawConn.Control, not RawConn.Read, so it never
// waits for (or competes with) a read pgconn's background reader may still
// have outstanding on the descriptor. One is kept per connection
// (peekerOf) so that a check allocates nothing.
type sockPeeker struct {
	rc    syscall.RawConn
	recv  func(fd uintptr) // p.peekFD, bound once
	buf   [1]byte
	state connState
}

// newSockPeeker returns nil when nc is not (TLS over) a socket.
func newSockPeeker(nc net.Conn) *sockPeeker {
	sc, ok := socketOf(nc).(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	p := &sockPeeker{rc: rc}
	p.recv = p.peekFD
	return p
}

func (p *sockPeeker) peek() connState {
	if p == nil {
		return connUnknown
	}
	p.state = connUnknown
	if err := p.rc.Control(p.recv); err != nil {
		return connClosed // the descriptor is already closed
	}
	return p.state
}

func (p *sockPeeker) peekFD(fd uintptr) {
	n, _, err := syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		p.state = connIdle
	case err == syscall.EINTR:
		p.state = connUnknown
	case err != nil: // ECONNRESET, ETIMEDOUT, ...
		p.state = connClosed
	case n == 0: // end of stream: the peer closed
		p.state = connClosed
	default:
		p.state = connPending
	}
}
