package mcp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// readSize is the size of the one buffer a connection reads the server's
// output into; a longer message is gathered into a second buffer, which
// is kept for the next long one.
const readSize = 64 << 10

// stdioTransport is the worker's client side of an MCP server's stdio:
// newline-delimited JSON-RPC, as the stdio transport specifies, read
// through one buffer for the life of the connection. A message longer
// than limit bytes fails the connection before more of it is held.
type stdioTransport struct {
	conn *stdioConn
}

// newStdio returns the transport over the server's standard output (r)
// and input (w). Closing r must unblock a Read of it (a pipe from
// os.Pipe does).
func newStdio(r io.ReadCloser, w io.WriteCloser, limit int64) *stdioTransport {
	return &stdioTransport{conn: &stdioConn{
		r:     r,
		w:     w,
		in:    bufio.NewReaderSize(r, readSize),
		limit: limit,
	}}
}

// Connect implements sdk.Transport.
func (t *stdioTransport) Connect(context.Context) (sdk.Connection, error) { return t.conn, nil }

// stdioConn implements sdk.Connection. Read is called by one goroutine
// at a time (the SDK's read loop); Write by many, one at a time.
type stdioConn struct {
	r     io.ReadCloser
	w     io.WriteCloser
	limit int64

	// Read's alone.
	in    *bufio.Reader
	long  []byte
	queue []jsonrpc.Message

	wmu  sync.Mutex
	wbuf []byte

	// The ids of the tools/call requests written and not answered yet:
	// their results are decoded here (decodeResponse).
	callsMu sync.Mutex
	calls   map[jsonrpc.ID]bool

	over      bool // set once by Read, read after it failed
	overMu    sync.Mutex
	closeOnce sync.Once
	closeErr  error
}

// Read returns the server's next message.
func (c *stdioConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(c.queue) > 0 {
		m := c.queue[0]
		c.queue = c.queue[1:]
		return c.answer(m), nil
	}
	for {
		line, err := c.line()
		if err != nil {
			return nil, err
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var m jsonrpc.Message
		if line[0] == '[' {
			m, err = c.batch(line)
		} else {
			m, err = decode(line)
		}
		if err != nil {
			return nil, err
		}
		return c.answer(m), nil
	}
}

// answer is m as the SDK is handed it: the answer to a tools/call
// request with its result decoded here, when decodeResult can.
func (c *stdioConn) answer(m jsonrpc.Message) jsonrpc.Message {
	r, ok := m.(*jsonrpc.Response)
	if !ok {
		return m
	}
	c.callsMu.Lock()
	call := c.calls[r.ID]
	delete(c.calls, r.ID)
	c.callsMu.Unlock()
	if !call {
		return m
	}
	return decodeResponse(r)
}

// line returns the next line, without its newline, valid until the next
// call. It holds no more than limit bytes of a line plus one read.
func (c *stdioConn) line() ([]byte, error) {
	c.long = c.long[:0]
	for {
		b, err := c.in.ReadSlice('\n')
		if err == nil && len(c.long) == 0 {
			b = b[:len(b)-1]
			return b, c.bound(len(b))
		}
		if err == nil {
			c.long = append(c.long, b[:len(b)-1]...)
			return c.long, c.bound(len(c.long))
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, c.ended(len(c.long)+len(b), err)
		}
		if err := c.bound(len(c.long) + len(b)); err != nil {
			return nil, err
		}
		c.long = append(c.long, b...)
	}
}

// bound fails a line of n bytes if it is longer than the limit.
func (c *stdioConn) bound(n int) error {
	if int64(n) <= c.limit {
		return nil
	}
	c.overMu.Lock()
	c.over = true
	c.overMu.Unlock()
	return fmt.Errorf("a message from the MCP server is larger than %d bytes", c.limit)
}

// ended is the error of a read that ended the output: io.EOF between
// messages, io.ErrUnexpectedEOF within one of n bytes.
func (c *stdioConn) ended(n int, err error) error {
	if err := c.bound(n); err != nil {
		return err
	}
	if errors.Is(err, os.ErrClosed) {
		// Closed by Close: the end of the output, as for the SDK's
		// own transports.
		err = io.EOF
	}
	if errors.Is(err, io.EOF) && n > 0 {
		return fmt.Errorf("the MCP server's output ended within a message: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// batch decodes a JSON-RPC batch: its first message is returned, the
// rest are queued.
func (c *stdioConn) batch(line []byte) (jsonrpc.Message, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(line, &raws); err != nil {
		return nil, fmt.Errorf("unmarshaling jsonrpc batch: %w", err)
	}
	if len(raws) == 0 {
		return nil, errors.New("empty JSON-RPC batch")
	}
	msgs := make([]jsonrpc.Message, len(raws))
	for i, raw := range raws {
		m, err := decode(raw)
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	c.queue = msgs[1:]
	return msgs[0], nil
}

// exceeded reports whether a message was larger than the limit.
func (c *stdioConn) exceeded() bool {
	c.overMu.Lock()
	defer c.overMu.Unlock()
	return c.over
}

// Write sends msg as one line, in one write.
func (c *stdioConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("marshaling message: %w", err)
	}
	call, _ := msg.(*jsonrpc.Request)
	if call != nil && (call.Method != "tools/call" || !call.IsCall()) {
		call = nil
	}
	if call != nil {
		// Known before the server can answer it.
		c.callsMu.Lock()
		if c.calls == nil {
			c.calls = map[jsonrpc.ID]bool{}
		}
		c.calls[call.ID] = true
		c.callsMu.Unlock()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(append(c.wbuf[:0], data...), '\n')
	_, err = c.w.Write(c.wbuf)
	if err != nil && call != nil {
		c.callsMu.Lock()
		delete(c.calls, call.ID)
		c.callsMu.Unlock()
	}
	if cap(c.wbuf) > readSize {
		// A large request's buffer is not kept.
		c.wbuf = nil
	}
	return err
}

// Close closes the server's input and output; a Read waiting for output
// returns. It may be called more than once, and concurrently.
func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = errors.Join(c.r.Close(), c.w.Close())
	})
	return c.closeErr
}

// SessionID implements sdk.Connection: stdio has no session id.
func (c *stdioConn) SessionID() string { return "" }

// decode is jsonrpc.DecodeMessage without the 32 KiB buffer its JSON
// decoder allocates for every message (half of what a call allocated in
// the worker). It reads the message's members by their exact names, as
// the SDK does; a message it cannot read, or that the SDK refuses, is
// left to jsonrpc.DecodeMessage, for the SDK's own error: one that does
// not parse, nests deeper than the SDK's bound, has another version, an
// id that is neither a number nor a string, ...
func decode(data []byte) (jsonrpc.Message, error) {
	var w map[string]json.RawMessage
	if deeper(data, maxDepth) || json.Unmarshal(data, &w) != nil || string(w["jsonrpc"]) != `"2.0"` {
		return jsonrpc.DecodeMessage(data)
	}
	var raw any
	if id, ok := w["id"]; ok && json.Unmarshal(id, &raw) != nil {
		return jsonrpc.DecodeMessage(data)
	}
	id, err := jsonrpc.MakeID(raw)
	if err != nil {
		return jsonrpc.DecodeMessage(data)
	}
	if m, ok := w["method"]; ok {
		var method string
		if json.Unmarshal(m, &method) != nil {
			return jsonrpc.DecodeMessage(data)
		}
		return &jsonrpc.Request{ID: id, Method: method, Params: w["params"]}, nil
	}
	if !id.IsValid() {
		return jsonrpc.DecodeMessage(data)
	}
	r := &jsonrpc.Response{ID: id, Result: w["result"]}
	if e, ok := w["error"]; ok && string(e) != "null" {
		var we jsonrpc.Error
		if json.Unmarshal(e, &we) != nil {
			return jsonrpc.DecodeMessage(data)
		}
		r.Error = &we
	}
	return r, nil
}

// maxDepth is the go-sdk's bound on the nesting of a message's objects
// and arrays.
const maxDepth = 1000

// deeper reports whether the JSON data nests objects and arrays deeper
// than max, as the go-sdk counts (strings skipped).
func deeper(data []byte, max int) bool {
	depth, str, esc := 0, false, false
	for _, b := range data {
		switch {
		case str && esc:
			esc = false
		case str && b == '\\':
			esc = true
		case str:
			str = b != '"'
		case b == '"':
			str = true
		case b == '{' || b == '[':
			if depth++; depth > max {
				return true
			}
		case (b == '}' || b == ']') && depth > 0:
			depth--
		}
	}
	return false
}
