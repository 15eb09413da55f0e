package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.yaml.in/yaml/v3"
)

// travelEnv writes the travel suite's environment, with the benign text in
// every vector, into a fresh root, as the harness does before a run, and
// returns the root and the environment as JSON.
func travelEnv(t *testing.T) (string, []byte) {
	t.Helper()
	dir := filepath.Join("..", "suites", "travel")
	var env any
	var vectors map[string]string
	for name, v := range map[string]any{"environment.yaml": &env, "vectors.yaml": &vectors} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	raw, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	inject := regexp.MustCompile(`\{\{inject:([a-z0-9_]+)\}\}`)
	state := inject.ReplaceAllStringFunc(string(raw), func(m string) string {
		text, ok := vectors[inject.FindStringSubmatch(m)[1]]
		if !ok {
			t.Fatalf("vector %s has no benign text", m)
		}
		return text
	})
	root := t.TempDir()
	vb, _ := json.Marshal(vectors)
	for name, b := range map[string][]byte{"state.json": []byte(state), "vectors.json": vb} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, []byte(state)
}

// travelSession serves the travel tools over MCP in memory, on the
// environment in root.
func travelSession(t *testing.T, root string) *mcp.ClientSession {
	t.Helper()
	return serve(t, "travel", root)
}

func readState(t *testing.T, root string) travelState {
	t.Helper()
	st, err := View[travelState](&Env{root: root})
	if err != nil {
		t.Fatal(err)
	}
	return *st
}

// A tool that changes the environment writes all of it back: every field of
// environment.yaml has a place in the state type, so that a utility check
// comparing the parts a task must not touch (post.mailbox == pre.mailbox)
// sees no change that the run did not make.
func TestTravelStateKeepsTheWholeEnvironment(t *testing.T) {
	_, state := travelEnv(t)
	var want, got any
	if err := json.Unmarshal(state, &want); err != nil {
		t.Fatal(err)
	}
	var s travelState
	dec := json.NewDecoder(strings.NewReader(string(state)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("environment.yaml has a field the state type lacks: %v", err)
	}
	b, _ := json.Marshal(s)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatal("the environment written back differs from environment.yaml")
	}
}

// Ratings come with guests' reviews: a tool that returns reviews claims the
// untrusted label and names the vector it returned; the directory's own
// facts do not.
func TestTravelReviewsAreAThirdPartys(t *testing.T) {
	for _, tc := range []struct {
		tool      string
		args      map[string]any
		untrusted bool
		vector    string
	}{
		{"get_rating_reviews_for_hotels", map[string]any{"hotel_names": []string{"Casa do Azulejo"}}, true, "review_hotel_azulejo"},
		{"get_rating_reviews_for_restaurants", map[string]any{"restaurant_names": []string{"Cedro Lisboa"}}, true, "review_restaurant_cedro"},
		{"get_rating_reviews_for_car_rental", map[string]any{"company_name": []string{"Tejo Wheels"}}, true, "review_car_tejo"},
		{"get_rating_reviews_for_hotels", map[string]any{"hotel_names": []string{"No Such Hotel"}}, false, ""},
		{"get_hotels_prices", map[string]any{"hotel_names": []string{"Casa do Azulejo"}}, false, ""},
		{"get_restaurants_address", map[string]any{"restaurant_names": []string{"Cedro Lisboa"}}, false, ""},
		{"get_flight_information", map[string]any{"departure_city": "Lisbon", "arrival_city": "Edinburgh"}, false, ""},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			root, _ := travelEnv(t)
			res := callTool(t, travelSession(t, root), tc.tool, tc.args)
			if res.IsError {
				t.Fatalf("the call failed: %v", res.Content)
			}
			if got := untrustedClaim(res); got != tc.untrusted {
				t.Fatalf("untrusted claim %v, want %v", got, tc.untrusted)
			}
			log, _ := os.ReadFile(filepath.Join(root, "read.log"))
			if got := strings.TrimSpace(string(log)); got != tc.vector {
				t.Fatalf("read.log %q, want %q", got, tc.vector)
			}
		})
	}
}

// What acts checks its arguments and changes the environment only when
// they hold.
func TestTravelActionsChangeTheEnvironment(t *testing.T) {
	root, _ := travelEnv(t)
	cs := travelSession(t, root)
	for _, bad := range []map[string]any{
		{"hotel": "No Such Hotel", "start_day": "2026-06-08", "end_day": "2026-06-12"},
		{"hotel": "Casa do Azulejo", "start_day": "8 June", "end_day": "2026-06-12"},
		{"hotel": "Casa do Azulejo", "start_day": "2026-06-12", "end_day": "2026-06-08"},
	} {
		if res := callTool(t, cs, "reserve_hotel", bad); !res.IsError {
			t.Fatalf("reserve_hotel %v did not fail", bad)
		}
	}
	if res := callTool(t, cs, "send_email", map[string]any{"recipients": []string{}, "subject": "s", "body": "b"}); !res.IsError {
		t.Fatal("a mail to nobody did not fail")
	}
	if st := readState(t, root); len(st.Reservations) != 0 || len(st.Mailbox.Emails) != 1 {
		t.Fatalf("failed calls changed the environment: %d reservations, %d mails", len(st.Reservations), len(st.Mailbox.Emails))
	}

	if res := callTool(t, cs, "reserve_hotel", map[string]any{"hotel": "Casa do Azulejo", "start_day": "2026-06-08", "end_day": "2026-06-12"}); res.IsError {
		t.Fatalf("reserve_hotel failed: %v", res.Content)
	}
	if res := callTool(t, cs, "create_calendar_event", map[string]any{
		"title": "Dinner", "start_time": "2026-06-11 18:00", "end_time": "2026-06-11 20:00",
		"participants": []string{"tomas.calder@larkmail.example"},
	}); res.IsError {
		t.Fatalf("create_calendar_event failed: %v", res.Content)
	}
	st := readState(t, root)
	want := travelReservation{Kind: "hotel", Title: "Casa do Azulejo", Start: "2026-06-08", End: "2026-06-12", ContactInformation: st.User.PhoneNumber}
	if len(st.Reservations) != 1 || st.Reservations[0] != want {
		t.Fatalf("reservations %+v, want [%+v]", st.Reservations, want)
	}
	ev := st.Calendar.Events[len(st.Calendar.Events)-1]
	if ev.ID != "2" || ev.Title != "Dinner" || !reflect.DeepEqual(ev.Participants, []string{"tomas.calder@larkmail.example", st.Calendar.Owner}) {
		t.Fatalf("the new event is %+v", ev)
	}
	invite := st.Mailbox.Emails[len(st.Mailbox.Emails)-1]
	if invite.Status != "sent" || invite.Subject != "Invitation: Dinner" || !reflect.DeepEqual(invite.Recipients, []string{"tomas.calder@larkmail.example"}) {
		t.Fatalf("the invitation is %+v", invite)
	}
}
