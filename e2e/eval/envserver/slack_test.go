package main

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// slackSession serves the slack suite's tools over an in-memory MCP
// connection, on a copy of state.
func slackSession(t *testing.T, state slackState) (*mcp.ClientSession, string) {
	t.Helper()
	root := writeState(t, state)
	return serve(t, "slack", root), root
}

func testSlackState() slackState {
	return slackState{
		Slack: slackWorkspace{
			Users:    []string{"Ana", "Ben"},
			Channels: []string{"general", "Partner_x"},
			ChannelCreators: []slackCreator{
				{Channel: "general", By: slackBot},
				{Channel: "Partner_x", By: "Ben"},
			},
			UserChannels: map[string][]string{"Ana": {"general"}, "Ben": {"general", "Partner_x"}},
			UserInbox: map[string][]slackMessage{
				"Ana": {{Sender: "Ben", Recipient: "Ana", Body: "hi"}},
				"Ben": {{Sender: slackBot, Recipient: "Ben", Body: "welcome"}},
			},
			ChannelInbox: map[string][]slackMessage{"general": {{Sender: slackBot, Recipient: "general", Body: "rules"}}},
			Invites:      []slackInvite{},
		},
		Web: slackWeb{Content: map[string]string{"www.a.example": "page"}, Requests: []string{}},
	}
}

// What someone other than the bot wrote is claimed untrusted: a channel
// name a partner chose, a message from a colleague, any web page; what
// only the bot wrote is not.
func TestSlackThirdPartyClaims(t *testing.T) {
	cs, _ := slackSession(t, testSlackState())
	cases := []struct {
		tool      string
		args      map[string]any
		untrusted bool
	}{
		{"get_channels", map[string]any{}, true},
		{"read_inbox", map[string]any{"user": "Ana"}, true},
		{"read_inbox", map[string]any{"user": "Ben"}, false},
		{"read_channel_messages", map[string]any{"channel": "general"}, false},
		{"read_channel_messages", map[string]any{"channel": "Partner_x"}, false},
		{"get_users_in_channel", map[string]any{"channel": "general"}, false},
		{"get_webpage", map[string]any{"url": "https://www.a.example"}, true},
	}
	for _, c := range cases {
		res := callTool(t, cs, c.tool, c.args)
		if res.IsError {
			t.Fatalf("%s %v failed: %v", c.tool, c.args, res.Content)
		}
		if got := untrustedClaim(res); got != c.untrusted {
			t.Errorf("%s %v: untrusted claim %v, want %v", c.tool, c.args, got, c.untrusted)
		}
	}

	// Once the partner's channel is gone from the list, nobody else named
	// a channel.
	s := testSlackState()
	s.Slack.Channels = []string{"general"}
	cs2, _ := slackSession(t, s)
	if untrustedClaim(callTool(t, cs2, "get_channels", map[string]any{})) {
		t.Error("get_channels is claimed untrusted with only the bot's channels")
	}
}

// The tools change the environment as AgentDojo's do, and an invitation is
// remembered after its user is removed.
func TestSlackChanges(t *testing.T) {
	cs, root := slackSession(t, testSlackState())
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"invite_user_to_slack", map[string]any{"user": "Cleo", "user_email": "cleo@mail.example"}},
		{"add_user_to_channel", map[string]any{"user": "Cleo", "channel": "general"}},
		{"send_direct_message", map[string]any{"recipient": "Ana", "body": "hello"}},
		{"send_channel_message", map[string]any{"channel": "Partner_x", "body": "hi all"}},
		{"post_webpage", map[string]any{"url": "http://www.b.example", "content": "news"}},
		{"remove_user_from_slack", map[string]any{"user": "Cleo"}},
	} {
		if res := callTool(t, cs, c.tool, c.args); res.IsError {
			t.Fatalf("%s failed: %v", c.tool, res.Content)
		}
	}
	for _, c := range []struct {
		tool string
		args map[string]any
	}{
		{"add_user_to_channel", map[string]any{"user": "Nobody", "channel": "general"}},
		{"send_channel_message", map[string]any{"channel": "nowhere", "body": "x"}},
		{"invite_user_to_slack", map[string]any{"user": "Ana", "user_email": "a@mail.example"}},
	} {
		if res := callTool(t, cs, c.tool, c.args); !res.IsError {
			t.Errorf("%s %v succeeded, want an error", c.tool, c.args)
		}
	}
	st, err := View[slackState](&Env{root: root})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Slack.Invites) != 1 || st.Slack.Invites[0].Email != "cleo@mail.example" {
		t.Errorf("invites %v, want Cleo's", st.Slack.Invites)
	}
	if len(st.Slack.Users) != 2 {
		t.Errorf("users %v, want Cleo removed", st.Slack.Users)
	}
	if in := st.Slack.UserInbox["Ana"]; len(in) != 2 || in[1].Sender != slackBot || in[1].Body != "hello" {
		t.Errorf("Ana's inbox %v", in)
	}
	if got := st.Web.Content["www.b.example"]; got != "news" {
		t.Errorf("posted page %q", got)
	}
	if len(st.Web.Requests) != 1 || st.Web.Requests[0] != "www.b.example" {
		t.Errorf("web requests %v", st.Web.Requests)
	}
}

// Calls made at once each leave their change: none is lost to another
// call's write of the whole state.
func TestSlackConcurrentChanges(t *testing.T) {
	cs, root := slackSession(t, testSlackState())
	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "send_channel_message",
				Arguments: map[string]any{"channel": "general", "body": fmt.Sprintf("m%d", i)}})
			if err == nil && res.IsError {
				err = fmt.Errorf("call %d failed: %v", i, res.Content)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	st, err := View[slackState](&Env{root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(st.Slack.ChannelInbox["general"]); got != n+1 {
		t.Fatalf("general has %d messages after %d posts, want %d", got, n, n+1)
	}
}
