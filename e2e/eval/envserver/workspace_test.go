package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.yaml.in/yaml/v3"
)

// wsSession starts the workspace suite's server on the suite's own
// environment (each vector holding its benign text) and returns a client
// session to it and the environment's directory.
func wsSession(t *testing.T) (*mcp.ClientSession, string) {
	t.Helper()
	suite := filepath.Join("..", "suites", "workspace")
	var env any
	wsReadYAML(t, filepath.Join(suite, "environment.yaml"), &env)
	var vectors map[string]string
	wsReadYAML(t, filepath.Join(suite, "vectors.yaml"), &vectors)
	state, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`\{\{inject:([a-z_]+)\}\}`).ReplaceAllStringFunc(string(state), func(m string) string {
		name := m[len("{{inject:") : len(m)-2]
		v, ok := vectors[name]
		if !ok {
			t.Fatalf("environment.yaml names the vector %s, which vectors.yaml does not have", name)
		}
		q, _ := json.Marshal(v)
		return string(q[1 : len(q)-1])
	})
	dir := t.TempDir()
	vj, _ := json.Marshal(vectors)
	for name, b := range map[string][]byte{"state.json": []byte(text), "vectors.json": vj} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cs := serve(t, "workspace", dir)
	return cs, dir
}

func wsReadYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// wsCall makes one tool call and returns its structured output and whether
// the result claims the untrusted label; a tool failure fails the test.
func wsCall(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (map[string]any, bool) {
	t.Helper()
	out, untrusted, errText := wsTry(t, cs, tool, args)
	if errText != "" {
		t.Fatalf("%s %v: %s", tool, args, errText)
	}
	return out, untrusted
}

// wsTry is wsCall that returns a tool failure's message instead.
func wsTry(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (map[string]any, bool, string) {
	t.Helper()
	if args == nil {
		args = map[string]any{}
	}
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	if res.IsError {
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return nil, false, "failed: " + b.String()
	}
	var out map[string]any
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: structured content %s: %v", tool, raw, err)
	}
	untrusted := false
	if ifc, ok := res.Meta["ifc"].(map[string]any); ok && ifc["integrity"] == "untrusted" {
		untrusted = true
	}
	return out, untrusted, ""
}

func wsLoad(t *testing.T, dir string) wsState {
	t.Helper()
	s, err := View[wsState](&Env{root: dir})
	if err != nil {
		t.Fatal(err)
	}
	return *s
}

// The suite serves AgentDojo's 24 workspace tools, by their names.
func TestWorkspaceTools(t *testing.T) {
	cs, _ := wsSession(t)
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tool := range res.Tools {
		got = append(got, tool.Name)
	}
	sort.Strings(got)
	want := []string{
		"add_calendar_event_participants", "append_to_file", "cancel_calendar_event", "create_calendar_event",
		"create_file", "delete_email", "delete_file", "get_current_day", "get_day_calendar_events",
		"get_draft_emails", "get_file_by_id", "get_received_emails", "get_sent_emails", "get_unread_emails",
		"list_files", "reschedule_calendar_event", "search_calendar_events", "search_contacts_by_email",
		"search_contacts_by_name", "search_emails", "search_files", "search_files_by_filename", "send_email",
		"share_file",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("tools:\n got %v\nwant %v", got, want)
	}
}

// What someone else wrote claims the untrusted label; what only Nora and
// her own accounts wrote does not.
func TestWorkspaceThirdPartyLabels(t *testing.T) {
	cs, dir := wsSession(t)
	for _, c := range []struct {
		tool      string
		args      map[string]any
		untrusted bool
	}{
		{"get_sent_emails", nil, false},
		{"get_received_emails", nil, true},
		{"search_emails", map[string]any{"query": "login code"}, true},
		{"search_contacts_by_name", map[string]any{"query": "Hana"}, false},
		{"get_current_day", nil, false},
		{"search_calendar_events", map[string]any{"query": "Lunch with Hana"}, false},
		{"search_calendar_events", map[string]any{"query": "Dentist"}, true}, // the dental office's invite
		{"get_day_calendar_events", map[string]any{"day": "2026-03-11"}, true},
		{"search_files_by_filename", map[string]any{"filename": "grocery-list"}, false},
		{"search_files_by_filename", map[string]any{"filename": "feedback-survey"}, true}, // owned by Ines
		{"search_files_by_filename", map[string]any{"filename": "madeira"}, true},         // Gabriel may edit it
		{"list_files", nil, true},
	} {
		_, untrusted := wsCall(t, cs, c.tool, c.args)
		if untrusted != c.untrusted {
			t.Errorf("%s %v: untrusted %v, want %v", c.tool, c.args, untrusted, c.untrusted)
		}
	}
	// The vectors each result held are noted for the harness.
	b, err := os.ReadFile(filepath.Join(dir, "read.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"email_lumengram_digest", "calendar_dentist_description", "drive_feedback_comment", "drive_trip_plans"} {
		if !bytes.Contains(b, []byte(v+"\n")) {
			t.Errorf("read.log lacks %s:\n%s", v, b)
		}
	}
	if bytes.Contains(b, []byte("calendar_pilates_description")) {
		t.Errorf("read.log names a vector no call returned:\n%s", b)
	}
}

// The calendar's changes: an invitation and a notice of a new time are
// mails to the participants; a moved event keeps its length.
func TestWorkspaceCalendarChanges(t *testing.T) {
	cs, dir := wsSession(t)
	before := wsLoad(t, dir)

	ev, _ := wsCall(t, cs, "create_calendar_event", map[string]any{
		"title": "Lunch", "start_time": "2026-03-17 12:00", "end_time": "2026-03-17 13:00",
		"participants": []string{"hana.kowalski@mailbox.org"},
	})
	if ev["id"] != "10" || ev["organizer"] != before.Account {
		t.Errorf("new event: %v", ev)
	}
	if ps := ev["participants"].([]any); len(ps) != 2 || ps[1] != before.Account {
		t.Errorf("the owner is always a participant: %v", ps)
	}
	moved, _ := wsCall(t, cs, "reschedule_calendar_event", map[string]any{"event_id": "7", "new_start_time": "2026-03-24 10:00"})
	if moved["start_time"] != "2026-03-24 10:00" || moved["end_time"] != "2026-03-24 10:45" {
		t.Errorf("moved event: %v", moved)
	}
	added, _ := wsCall(t, cs, "add_calendar_event_participants", map[string]any{"event_id": "0", "participants": []string{"raul.mendes@corvane.com"}})
	if ps := added["participants"].([]any); ps[len(ps)-1] != "raul.mendes@corvane.com" {
		t.Errorf("participants: %v", ps)
	}
	wsCall(t, cs, "cancel_calendar_event", map[string]any{"event_id": "1"})

	after := wsLoad(t, dir)
	var subjects []string
	for _, m := range after.Emails[len(before.Emails):] {
		if m.Status != "sent" || m.Sender != before.Account {
			t.Errorf("a notice is a mail Nora sent: %+v", m)
		}
		subjects = append(subjects, m.Subject+" -> "+strings.Join(m.Recipients, ","))
	}
	want := []string{
		"Invitation: Lunch -> hana.kowalski@mailbox.org",
		"Rescheduled: Dentist appointment -> nora.lindqvist@harbourlight.io,reception@smiledental.example",
		"Canceled: Lunch with Hana -> nora.lindqvist@harbourlight.io,hana.kowalski@mailbox.org",
	}
	if strings.Join(subjects, "\n") != strings.Join(want, "\n") {
		t.Errorf("mails sent:\n%s\nwant:\n%s", strings.Join(subjects, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range after.Events {
		if e.ID == "1" && e.Status != "canceled" {
			t.Errorf("event 1 is %s", e.Status)
		}
	}

	for _, bad := range []map[string]any{
		{"title": "x", "start_time": "2026-03-17", "end_time": "2026-03-17 13:00"},
		{"title": "x", "start_time": "2026-03-17 14:00", "end_time": "2026-03-17 13:00"},
	} {
		if _, _, e := wsTry(t, cs, "create_calendar_event", bad); e == "" {
			t.Errorf("create_calendar_event %v did not fail", bad)
		}
	}
	if _, _, e := wsTry(t, cs, "reschedule_calendar_event", map[string]any{"event_id": "99", "new_start_time": "2026-03-24 10:00"}); !strings.Contains(e, `"99"`) {
		t.Errorf("an unknown event: %q", e)
	}
}

// Mail and drive: a deleted mail goes to the trash, a failed search is an
// error, a file's size is its content's, and calls made at once all land.
func TestWorkspaceMailAndDrive(t *testing.T) {
	cs, dir := wsSession(t)
	before := wsLoad(t, dir)

	if _, _, e := wsTry(t, cs, "search_emails", map[string]any{"query": "no such words anywhere"}); e == "" {
		t.Error("a search that finds nothing did not fail")
	}
	unread, _ := wsCall(t, cs, "get_unread_emails", nil)
	if n := len(unread["emails"].([]any)); n != 4 {
		t.Errorf("%d unread emails, want 4", n)
	}
	if again, _ := wsCall(t, cs, "get_unread_emails", nil); len(again["emails"].([]any)) != 0 {
		t.Error("reading the unread emails did not mark them read")
	}
	wsCall(t, cs, "delete_email", map[string]any{"email_id": "1"})

	f, _ := wsCall(t, cs, "append_to_file", map[string]any{"file_id": "6", "content": "- flour\n"})
	if int(f["size"].(float64)) != len(f["content"].(string)) || !strings.HasSuffix(f["content"].(string), "- flour\n") {
		t.Errorf("appended file: %v", f)
	}
	if _, _, e := wsTry(t, cs, "share_file", map[string]any{"file_id": "6", "email": "hana.kowalski@mailbox.org", "permission": "owner"}); e == "" {
		t.Error("share_file took the permission owner")
	}
	shared, _ := wsCall(t, cs, "share_file", map[string]any{"file_id": "6", "email": "hana.kowalski@mailbox.org", "permission": "r"})
	if shared["shared_with"].(map[string]any)["hana.kowalski@mailbox.org"] != "r" {
		t.Errorf("shared: %v", shared["shared_with"])
	}
	if _, _, e := wsTry(t, cs, "send_email", map[string]any{"recipients": []string{"a@b.example"}, "subject": "s", "body": "b",
		"attachments": []map[string]any{{"type": "file", "file_id": "42"}}}); e == "" {
		t.Error("a mail with a file that does not exist was sent")
	}

	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, e := wsTry(t, cs, "send_email", map[string]any{"recipients": []string{"priya.ramaswamy@harbourlight.io"}, "subject": "at once", "body": "b"}); e != "" {
				t.Error(e)
			}
		}()
	}
	wg.Wait()

	after := wsLoad(t, dir)
	if len(after.Trash) != 1 || after.Trash[0].ID != "1" || len(after.Emails) != len(before.Emails)-1+8 {
		t.Errorf("%d emails (from %d) and trash %v", len(after.Emails), len(before.Emails), after.Trash)
	}
	ids := map[string]bool{}
	for _, m := range append(after.Emails, after.Trash...) {
		if ids[m.ID] {
			t.Errorf("two emails have the ID %s", m.ID)
		}
		ids[m.ID] = true
	}
	for _, f := range after.Files {
		if f.Size != len(f.Content) {
			t.Errorf("file %s: size %d, content %d bytes", f.ID, f.Size, len(f.Content))
		}
	}
}
