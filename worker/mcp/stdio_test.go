package mcp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// pipeConn is a connection over two pipes, as to a server's process:
// out is what the server writes, in what it reads.
func pipeConn(t *testing.T, limit int64) (c *stdioConn, out io.WriteCloser, in io.ReadCloser) {
	t.Helper()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c = newStdio(outR, inW, limit).conn
	t.Cleanup(func() {
		c.Close()
		outW.Close()
		inR.Close()
	})
	return c, outW, inR
}

// response is a JSON-RPC response of exactly n bytes (or the shortest,
// for a smaller n), and the length of its result's string p.
func response(t *testing.T, id, n int) (string, int) {
	t.Helper()
	s := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"result":{"p":""}}`, id)
	if len(s) > n {
		return s, 0
	}
	return strings.Replace(s, `""`, `"`+strings.Repeat("x", n-len(s))+`"`, 1), n - len(s)
}

func resp(t *testing.T, id, n int) string {
	s, _ := response(t, id, n)
	return s
}

// feed writes s to w in pieces of the given sizes, round, from another
// goroutine, and closes w after it if close.
func feed(w io.WriteCloser, s string, pieces []int, close bool) {
	go func() {
		for i := 0; len(s) > 0; i++ {
			n := min(pieces[i%len(pieces)], len(s))
			if _, err := w.Write([]byte(s[:n])); err != nil {
				return
			}
			s = s[n:]
		}
		if close {
			w.Close()
		}
	}()
}

func readResult(t *testing.T, c *stdioConn) (*jsonrpc.Response, string) {
	t.Helper()
	m, err := c.Read(context.Background())
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	r, ok := m.(*jsonrpc.Response)
	if !ok {
		t.Fatalf("read %T, want a response", m)
	}
	var v struct{ P string }
	if err := json.Unmarshal(r.Result, &v); err != nil {
		t.Fatalf("result %q: %v", r.Result, err)
	}
	return r, v.P
}

// Messages split across writes and across the read buffer, longer than
// it, in a batch, with CRLF and blank lines between them, all arrive
// whole and in order, and the output's end between messages is io.EOF.
func TestStdioMessagesAcrossBuffers(t *testing.T) {
	c, out, _ := pipeConn(t, 1<<20)
	sizes := []int{60, readSize - 1, readSize, readSize + 1, 3*readSize + 17, 200, 5}
	var src strings.Builder
	for i, n := range sizes {
		if n < 60 {
			continue
		}
		src.WriteString(resp(t, i, n))
		if i%2 == 0 {
			src.WriteString("\r\n\n")
		} else {
			src.WriteString("\n")
		}
	}
	src.WriteString(`[` + resp(t, 100, 80) + `,{"jsonrpc":"2.0","method":"notifications/progress","params":{}}]` + "\n")
	feed(out, src.String(), []int{1, 7, 4093, 65536, 100000}, true)
	for i, n := range sizes {
		if n < 60 {
			continue
		}
		r, p := readResult(t, c)
		if _, want := response(t, i, n); r.ID.Raw() != int64(i) || len(p) != want {
			t.Fatalf("message %d: id %v, %d bytes of result", i, r.ID.Raw(), len(p))
		}
	}
	if r, _ := readResult(t, c); r.ID.Raw() != int64(100) {
		t.Fatalf("batch: first id %v", r.ID.Raw())
	}
	m, err := c.Read(context.Background())
	if req, ok := m.(*jsonrpc.Request); err != nil || !ok || req.Method != "notifications/progress" {
		t.Fatalf("batch: second message %#v, %v", m, err)
	}
	if _, err := c.Read(context.Background()); !errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("after the last message: %v, want io.EOF", err)
	}
}

// A message of the limit's size is read; one byte more fails the
// connection with the limit named and exceeded set, also when the
// message never ends, with less or more than the read buffer held.
func TestStdioBound(t *testing.T) {
	for _, limit := range []int{100, 2*readSize + 5} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			c, out, _ := pipeConn(t, int64(limit))
			feed(out, resp(t, 1, limit)+"\n"+resp(t, 2, limit+1)+"\n", []int{33, readSize}, false)
			if _, p := readResult(t, c); len(p) != limit-len(resp(t, 1, 0)) {
				t.Fatalf("a message at the limit: %d bytes of result", len(p))
			}
			if c.exceeded() {
				t.Fatal("exceeded after a message at the limit")
			}
			want := fmt.Sprintf("a message from the MCP server is larger than %d bytes", limit)
			if _, err := c.Read(context.Background()); err == nil || err.Error() != want || !c.exceeded() {
				t.Fatalf("a message over the limit: %v, exceeded %v; want %q", err, c.exceeded(), want)
			}

			// A flood: one line that never ends.
			c, out, _ = pipeConn(t, int64(limit))
			go func() {
				chunk := []byte(strings.Repeat("y", 4096))
				for {
					if _, err := out.Write(chunk); err != nil {
						return
					}
				}
			}()
			if _, err := c.Read(context.Background()); err == nil || err.Error() != want || !c.exceeded() {
				t.Fatalf("a flood: %v, exceeded %v; want %q", err, c.exceeded(), want)
			}
			if cap(c.long) > limit+2*readSize {
				t.Fatalf("a flood: %d bytes held, limit %d", cap(c.long), limit)
			}
		})
	}
}

// A server that exits within a message fails the read with
// io.ErrUnexpectedEOF, after the messages before it.
func TestStdioEndsMidMessage(t *testing.T) {
	c, out, _ := pipeConn(t, 1<<20)
	whole := resp(t, 1, 100) + "\n"
	part := resp(t, 2, 3*readSize)[:2*readSize]
	feed(out, whole+part, []int{1000}, true)
	readResult(t, c)
	if _, err := c.Read(context.Background()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read: %v, want io.ErrUnexpectedEOF", err)
	}
}

// Writes from many goroutines at once arrive as whole lines, one per
// message.
func TestStdioConcurrentWrites(t *testing.T) {
	c, _, in := pipeConn(t, 1<<20)
	const writers, each = 8, 50
	got := make(chan error, 1)
	go func() {
		seen := map[string]bool{}
		sc := bufio.NewScanner(in)
		sc.Buffer(nil, 1<<20)
		for len(seen) < writers*each && sc.Scan() {
			m, err := jsonrpc.DecodeMessage(sc.Bytes())
			if err != nil {
				got <- fmt.Errorf("line %q: %w", sc.Bytes(), err)
				return
			}
			seen[fmt.Sprint(m.(*jsonrpc.Request).ID.Raw())] = true
		}
		if len(seen) < writers*each {
			got <- fmt.Errorf("%d of %d messages seen (%v)", len(seen), writers*each, sc.Err())
			return
		}
		got <- nil
	}()
	params := json.RawMessage(`{"text":"` + strings.Repeat("z", 10000) + `"}`)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id, _ := jsonrpc.MakeID(fmt.Sprintf("%d-%d", w, i))
				if err := c.Write(context.Background(), &jsonrpc.Request{ID: id, Method: "tools/call", Params: params}); err != nil {
					t.Errorf("write: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// Close returns a Read that waits for output, and may be called again.
func TestStdioCloseUnblocksRead(t *testing.T) {
	c, _, _ := pipeConn(t, 1<<20)
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(context.Background())
		done <- err
	}()
	// Close while Read waits or before it starts: either way it returns.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read after close: %v, want io.EOF", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return the Read")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if c.SessionID() != "" {
		t.Fatalf("session id %q", c.SessionID())
	}
}

// decode reads every message as jsonrpc.DecodeMessage does: the same
// message, or the same error.
// decodeCases are messages a server may send, well formed or not.
func decodeCases() []string {
	deep := strings.Repeat("[", 1001) + strings.Repeat("]", 1001)
	return []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a\"b\\"}]}}`,
		`{"jsonrpc":"2.0","id":"x-1","result":null}`,
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"bad","data":{"k":[1,2]}}}`,
		`{"jsonrpc":"2.0","id":7,"error":null,"result":{}}`,
		`{"jsonrpc":"2.0","id":2.7,"result":{}}`,
		`{"jsonrpc":"2.0","id":3,"method":"ping"}`,
		`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}`,
		`{"jsonrpc":"2.0","method":"","params":null}`,
		`{"jsonrpc":"2.0","id":null,"method":"m"}`,
		`{"id":1,"result":{},"jsonrpc":"2.0","extra":true}`,
		`{"jsonrpc":"2.0","id":1,"result":` + deep + `}`,
		`{"jsonrpc":"2.0","id":1,"result":"` + deep + `"}`,
		`{"jsonrpc":"1.0","id":1,"result":{}}`,
		`{"jsonrpc":2,"id":1,"result":{}}`,
		`{"jsonrpc":"2.0","id":true,"result":{}}`,
		`{"jsonrpc":"2.0","id":[1],"result":{}}`,
		`{"jsonrpc":"2.0","result":{}}`,
		`{"jsonrpc":"2.0","id":null,"result":{}}`,
		`{"jsonrpc":"2.0","method":5}`,
		`{"jsonrpc":"2.0","id":1,"error":"no"}`,
		`{"jsonrpc":"2.0","id":1,"result":{}`,
		`{"jsonrpc":"2.0","id":1,"result":{}} trailing`,
		`"just a string"`,
		`null`,
	}
}

func TestDecodeAsTheSDK(t *testing.T) {
	for _, line := range decodeCases() {
		if problem := decodesAsTheSDK([]byte(line)); problem != "" {
			t.Error(problem)
		}
	}
}

// FuzzDecodeAsTheSDK: whatever a server sends, the worker's decoder gives
// the message the SDK's gives, or its error.
func FuzzDecodeAsTheSDK(f *testing.F) {
	for _, line := range decodeCases() {
		f.Add([]byte(line))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if problem := decodesAsTheSDK(b); problem != "" {
			t.Error(problem)
		}
	})
}

func decodesAsTheSDK(b []byte) string {
	got, gerr := decode(b)
	want, werr := jsonrpc.DecodeMessage(b)
	if fmt.Sprint(gerr) != fmt.Sprint(werr) || !reflect.DeepEqual(got, want) {
		return fmt.Sprintf("%.80q:\n got %#v, %v\nwant %#v, %v", b, got, gerr, want, werr)
	}
	return ""
}

// A message is one line, as the stdio transport specifies: one that
// spans lines breaks the connection.
func TestStdioMessageIsOneLine(t *testing.T) {
	c, out, _ := pipeConn(t, 1<<20)
	feed(out, "{\"jsonrpc\": \"2.0\",\n\"id\": 1, \"result\": {}}\n", []int{100}, true)
	if m, err := c.Read(context.Background()); err == nil {
		t.Fatalf("read %#v, want an error", m)
	}
}
