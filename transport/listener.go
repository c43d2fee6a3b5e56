package transport

import "net"

// WrapListener returns a listener whose Accept passes every accepted
// connection through wrap. A nil wrap returns l unchanged.
func WrapListener(l net.Listener, wrap func(net.Conn) net.Conn) net.Listener {
	if wrap == nil {
		return l
	}
	return &wrapListener{Listener: l, wrap: wrap}
}

type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

// Accept waits for the next connection and wraps it.
func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}
