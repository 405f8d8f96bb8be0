//go:build unix && !aix

package postgres

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// awaitReadable blocks until c has something to report to a reader (bytes,
// end of stream or an error) without consuming it: the netpoller wakes the
// peek when the socket becomes readable. It makes the tests independent of
// when the kernel delivers what the peer sent.
func awaitReadable(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if err := rc.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
	}); err != nil {
		t.Fatal(err)
	}
}

func TestPeekConn(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		c, _ := tcpPair(t)
		if got := peekConn(c); got != connIdle {
			t.Fatalf("peek = %v, want idle", got)
		}
	})
	t.Run("bytes waiting are left for the reader", func(t *testing.T) {
		c, s := tcpPair(t)
		if _, err := s.Write([]byte("E")); err != nil {
			t.Fatal(err)
		}
		awaitReadable(t, c)
		for range 2 {
			if got := peekConn(c); got != connPending {
				t.Fatalf("peek = %v, want pending", got)
			}
		}
		var b [1]byte
		if n, err := c.Read(b[:]); n != 1 || b[0] != 'E' || err != nil {
			t.Fatalf("read after peek: %d %q %v", n, b[:n], err)
		}
		if got := peekConn(c); got != connIdle {
			t.Fatalf("peek after the read = %v, want idle", got)
		}
	})
	t.Run("peer closed", func(t *testing.T) {
		c, s := tcpPair(t)
		s.Close()
		awaitReadable(t, c)
		if got := peekConn(c); got != connClosed {
			t.Fatalf("peek = %v, want closed", got)
		}
	})
	t.Run("peer reset", func(t *testing.T) {
		c, s := tcpPair(t)
		if err := s.SetLinger(0); err != nil { // close sends RST
			t.Fatal(err)
		}
		s.Close()
		awaitReadable(t, c)
		if got := peekConn(c); got != connClosed {
			t.Fatalf("peek = %v, want closed", got)
		}
	})
	t.Run("closed locally", func(t *testing.T) {
		c, _ := tcpPair(t)
		c.Close()
		if got := peekConn(c); got != connClosed {
			t.Fatalf("peek = %v, want closed", got)
		}
	})
	t.Run("through TLS", func(t *testing.T) {
		c, s := tcpPair(t)
		tc := tls.Client(c, &tls.Config{})
		if got := peekConn(tc); got != connIdle {
			t.Fatalf("peek = %v, want idle", got)
		}
		s.Close()
		awaitReadable(t, c)
		if got := peekConn(tc); got != connClosed {
			t.Fatalf("peek = %v, want closed", got)
		}
	})
	t.Run("not a socket", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if got := peekConn(a); got != connUnknown {
			t.Fatalf("peek = %v, want unknown", got)
		}
	})
}

// TestPeekAllocs: the check runs on every acquire, ResolveRuntime's
// included; with the connection's peeker kept, it allocates nothing.
func TestPeekAllocs(t *testing.T) {
	c, _ := tcpPair(t)
	p := newSockPeeker(c)
	if n := testing.AllocsPerRun(100, func() { p.peek() }); n != 0 {
		t.Errorf("peek allocates %.0f times per call, want 0", n)
	}
}

func BenchmarkPeek(b *testing.B) {
	c, _ := tcpPair(b)
	p := newSockPeeker(c)
	b.ReportAllocs()
	for b.Loop() {
		if p.peek() != connIdle {
			b.Fatal("not idle")
		}
	}
}
