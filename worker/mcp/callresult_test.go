package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	segmentio "github.com/segmentio/encoding/json"
)

// usualResults are tools/call results as servers send them for the most
// part; oddResults are the rest, and what is not a result.
func resultCases() []string { return append(usualResults(), oddResults()...) }

func usualResults() []string {
	return []string{
		// What a go-sdk server answers for a tool with structured output.
		`{"content":[{"type":"text","text":"{\"text\":\"hi\"}"}],"structuredContent":{"text":"hi"}}`,
		// What the reference server-everything's echo answers.
		`{"content":[{"type":"text","text":"Echo: hi"}]}`,
		`{"content":[{"type":"text","text":"no"}],"isError":true}`,
		`{"content":[],"isError":false,"_meta":{"ifc":{"integrity":"untrusted","secrecy":["pii"]}}}`,
		`{"content":null,"structuredContent":null,"_meta":null}`,
		`{}`,
		`{"content":[{"type":"text"}]}`,
		`{"content":[{"text":"a","type":"text"},{"type":"text","text":"\u00e9\ud83d\ude00 \"q\" \\ \n"}]}`,
		`{"structuredContent":[1,2.5,-3e2,"x",true,null,{"a":{"b":[]}}]}`,
		`{"structuredContent":"just text"}`,
		`{"structuredContent":12345678901234567890123}`,
		`{"structuredContent":{"a":1,"a":2}}`,
		`{"_meta":{"k":{"k":1},"k":{"j":2}}}`,
		// What a go-sdk server answers on the protocol of 2026-07-28.
		`{"_meta":{"ifc":{"integrity":"trusted","secrecy":[]},"io.modelcontextprotocol/serverInfo":{"name":"s","version":"1"}},"content":[{"type":"text","text":"hi"}],"resultType":"complete"}`,
		`{"content":[{"type":"text","text":"\ud800"}]}`,
		"{\"content\":[{\"type\":\"text\",\"text\":\"\xff\xfe\"}]}",
	}
}

// Not decoded here: the SDK decodes them, or refuses them.
func oddResults() []string {
	return []string{
		`{"content":[{"type":"image","mimeType":"image/png","data":"AAAA"}]}`,
		`{"content":[{"type":"text","text":"a","annotations":{"audience":["user"]}}]}`,
		`{"content":[{"type":"text","text":"a","_meta":{}}]}`,
		`{"content":[{"type":"text","text":"a","text":"b"}]}`,
		`{"content":[{"type":"text","Text":"a"}]}`,
		`{"content":[{"type":"Text","text":"a"}]}`,
		`{"content":[{"type":"text","text":null}]}`,
		`{"content":[{"type":"text","text":5}]}`,
		`{"content":[null]}`,
		`{"content":[5]}`,
		`{"content":{"type":"text","text":"a"}}`,
		`{"Content":[{"type":"text","text":"a"}]}`,
		`{"content":[],"content":[{"type":"text","text":"a"}]}`,
		`{"_meta":{"a":1},"_meta":{"b":2}}`,
		`{"isError":"true"}`,
		`{"isError":null}`,
		`{"isError":1}`,
		`{"_meta":[1]}`,
		`{"_meta":"x"}`,
		`{"resultType":"input_required"}`,
		`{"resultType":"Complete"}`,
		`{"resultType":null}`,
		`{"inputRequests":{}}`,
		`{"requestState":"s"}`,
		`{"extra":1}`,
		`{"structuredContent":` + strings.Repeat("[", 1001) + strings.Repeat("]", 1001) + `}`,
		`{"structuredContent":1e400}`,
		`[]`,
		`null`,
		`"x"`,
		`{"content":[]`,
	}
}

// decodesResultAsTheSDK checks that a result the worker decodes is
// decoded so by the SDK's client too: jsonrpc2's Await decodes a result
// with the SDK's JSON decoder (segmentio's, names matched by case), which
// calls CallToolResult.UnmarshalJSON.
func decodesResultAsTheSDK(b []byte) string {
	got, ok := decodeResult(b)
	if !ok {
		return ""
	}
	want := new(sdk.CallToolResult)
	d := segmentio.NewDecoder(bytes.NewReader(b))
	d.DontMatchCaseInsensitiveStructFields()
	if err := d.Decode(want); err != nil {
		return fmt.Sprintf("%.80q: decoded %#v; the SDK refuses it: %v", b, got, err)
	}
	if !reflect.DeepEqual(exported(got), exported(want)) || got.NeedsInput() != want.NeedsInput() {
		return fmt.Sprintf("%.80q:\n got %#v\nwant %#v", b, got, want)
	}
	return ""
}

// exported is a copy of r's exported fields. The one field it is not
// (resultType) is read through NeedsInput alone.
func exported(r *sdk.CallToolResult) *sdk.CallToolResult {
	out := new(sdk.CallToolResult)
	v, o := reflect.ValueOf(r).Elem(), reflect.ValueOf(out).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).IsExported() {
			o.Field(i).Set(v.Field(i))
		}
	}
	return out
}

func TestDecodeResultAsTheSDK(t *testing.T) {
	for _, c := range resultCases() {
		if problem := decodesResultAsTheSDK([]byte(c)); problem != "" {
			t.Error(problem)
		}
	}
}

// FuzzDecodeResultAsTheSDK: whatever result a server sends, the worker
// decodes it as the SDK does, or leaves it to the SDK.
func FuzzDecodeResultAsTheSDK(f *testing.F) {
	for _, c := range resultCases() {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if problem := decodesResultAsTheSDK(b); problem != "" {
			t.Error(problem)
		}
	})
}

// The results servers send for the most part are decoded here; the rest
// are left to the SDK.
func TestDecodeResultDecodesTheUsual(t *testing.T) {
	for _, c := range usualResults() {
		if _, ok := decodeResult([]byte(c)); !ok {
			t.Errorf("%.80q: left to the SDK", c)
		}
	}
	for _, c := range oddResults() {
		if _, ok := decodeResult([]byte(c)); ok {
			t.Errorf("%.80q: decoded, want it left to the SDK", c)
		}
	}
}

// The transport decodes the answer to a tools/call request, and only
// that: the SDK is handed it as the error of the response, which it
// returns as it is; any other answer, or one decodeResult leaves, as it
// came.
func TestStdioDecodesToolResults(t *testing.T) {
	c, out, _ := pipeConn(t, 1<<20)
	ctx := context.Background()
	request := func(id int64, method string) {
		t.Helper()
		rid, _ := jsonrpc.MakeID(float64(id))
		if err := c.Write(ctx, &jsonrpc.Request{ID: rid, Method: method, Params: json.RawMessage(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	request(1, "tools/call")
	request(2, "tools/list")
	request(3, "tools/call")
	// A notification of the same method has no answer to decode.
	if err := c.Write(ctx, &jsonrpc.Request{Method: "tools/call", Params: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	text := `{"content":[{"type":"text","text":"hi"}],"structuredContent":{"text":"hi"}}`
	image := `{"content":[{"type":"image","mimeType":"image/png","data":"AAAA"}]}`
	feed(out, `{"jsonrpc":"2.0","id":2,"result":`+text+"}\n"+
		`{"jsonrpc":"2.0","id":1,"result":`+text+"}\n"+
		`{"jsonrpc":"2.0","id":1,"result":`+text+"}\n"+
		`{"jsonrpc":"2.0","id":3,"result":`+image+"}\n", []int{4096}, false)

	decoded := func(want bool) {
		t.Helper()
		m, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r := m.(*jsonrpc.Response)
		var dr *decodedResult
		switch {
		case errors.As(r.Error, &dr) != want:
			t.Fatalf("response %v: error %v, want decoded %v", r.ID, r.Error, want)
		case want && r.Result != nil:
			t.Fatalf("response %v: decoded, and its result kept", r.ID)
		case want && (dr.res.StructuredContent.(map[string]any)["text"] != "hi" || dr.res.Content[0].(*sdk.TextContent).Text != "hi"):
			t.Fatalf("response %v: decoded %#v", r.ID, dr.res)
		case !want && r.Result == nil:
			t.Fatalf("response %v: no result", r.ID)
		}
	}
	decoded(false) // tools/list
	decoded(true)  // tools/call
	decoded(false) // an answer to the same id again: not a call's
	decoded(false) // an image: the SDK's to decode
}
