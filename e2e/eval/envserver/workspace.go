package main

// The workspace suite: one person's mail, calendar and cloud drive, with
// the tools of AgentDojo's workspace suite (same names, arguments and
// meaning) over a state of our own. What the user or the user's own
// account wrote is Own; a received mail, an event someone else organised
// and a file someone else owns or may edit are ThirdParty.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func init() { suites["workspace"] = registerWorkspace }

// wsState is the workspace environment (environment.yaml, state.json).
type wsState struct {
	Account    string      `json:"account_email"`
	CurrentDay string      `json:"current_day"`
	Now        string      `json:"now"`
	Contacts   []wsContact `json:"contacts"`
	Emails     []wsEmail   `json:"emails"`
	Trash      []wsEmail   `json:"trash"`
	Events     []wsEvent   `json:"events"`
	Files      []wsFile    `json:"files"`
}

type wsContact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

type wsAttachment struct {
	Type   string `json:"type" jsonschema:"file (a file of the cloud drive) or event"`
	FileID string `json:"file_id,omitempty" jsonschema:"the ID of the cloud drive file, for type file"`
	Title  string `json:"title,omitempty" jsonschema:"the event's title, for type event"`
	Start  string `json:"start_time,omitempty" jsonschema:"the event's start, YYYY-MM-DD HH:MM, for type event"`
}

type wsEmail struct {
	ID          string         `json:"id"`
	Sender      string         `json:"sender"`
	Recipients  []string       `json:"recipients"`
	CC          []string       `json:"cc"`
	BCC         []string       `json:"bcc"`
	Subject     string         `json:"subject"`
	Body        string         `json:"body"`
	Status      string         `json:"status" jsonschema:"received, sent or draft"`
	Read        bool           `json:"read"`
	Timestamp   string         `json:"timestamp"`
	Attachments []wsAttachment `json:"attachments"`
}

type wsEvent struct {
	ID           string   `json:"id"`
	Title        string   `json:"title"`
	Description  string   `json:"description"`
	Start        string   `json:"start_time" jsonschema:"YYYY-MM-DD HH:MM"`
	End          string   `json:"end_time" jsonschema:"YYYY-MM-DD HH:MM"`
	Location     string   `json:"location"`
	Participants []string `json:"participants"`
	AllDay       bool     `json:"all_day"`
	Status       string   `json:"status" jsonschema:"confirmed or canceled"`
	Organizer    string   `json:"organizer"`
}

type wsFile struct {
	ID           string            `json:"id"`
	Filename     string            `json:"filename"`
	Content      string            `json:"content"`
	Owner        string            `json:"owner"`
	LastModified string            `json:"last_modified"`
	Size         int               `json:"size"`
	SharedWith   map[string]string `json:"shared_with" jsonschema:"email address to permission: r or rw"`
}

const wsTimeLayout = "2006-01-02 15:04"

func (s *wsState) norm() {
	if s.Contacts == nil {
		s.Contacts = []wsContact{}
	}
	if s.Emails == nil {
		s.Emails = []wsEmail{}
	}
	if s.Trash == nil {
		s.Trash = []wsEmail{}
	}
	if s.Events == nil {
		s.Events = []wsEvent{}
	}
	if s.Files == nil {
		s.Files = []wsFile{}
	}
	for i := range s.Emails {
		s.Emails[i].norm()
	}
	for i := range s.Trash {
		s.Trash[i].norm()
	}
	for i := range s.Events {
		if s.Events[i].Participants == nil {
			s.Events[i].Participants = []string{}
		}
	}
	for i := range s.Files {
		if s.Files[i].SharedWith == nil {
			s.Files[i].SharedWith = map[string]string{}
		}
		// The content decides the size: environment.yaml leaves it out,
		// and an injection changes it.
		s.Files[i].Size = len(s.Files[i].Content)
	}
}

func (m *wsEmail) norm() {
	for _, l := range []*[]string{&m.Recipients, &m.CC, &m.BCC} {
		if *l == nil {
			*l = []string{}
		}
	}
	if m.Attachments == nil {
		m.Attachments = []wsAttachment{}
	}
}

// wsNextID is one more than the largest numeric ID in ids.
func wsNextID(ids []string) string {
	top := -1
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil && n > top {
			top = n
		}
	}
	return strconv.Itoa(top + 1)
}

func (s *wsState) send(recipients, cc, bcc []string, subject, body string, att []wsAttachment) wsEmail {
	ids := []string{}
	for _, m := range s.Emails {
		ids = append(ids, m.ID)
	}
	for _, m := range s.Trash {
		ids = append(ids, m.ID)
	}
	m := wsEmail{
		ID: wsNextID(ids), Sender: s.Account, Recipients: recipients, CC: cc, BCC: bcc,
		Subject: subject, Body: body, Status: "sent", Read: true, Timestamp: s.Now, Attachments: att,
	}
	m.norm()
	s.Emails = append(s.Emails, m)
	return m
}

func (s *wsState) mailOrigin(ms []wsEmail) Origin {
	for _, m := range ms {
		if !strings.EqualFold(m.Sender, s.Account) {
			return ThirdParty
		}
	}
	return Own
}

func (s *wsState) eventOrigin(es []wsEvent) Origin {
	for _, e := range es {
		if e.Organizer != "" && !strings.EqualFold(e.Organizer, s.Account) {
			return ThirdParty
		}
	}
	return Own
}

// fileOrigin: a file someone else owns, or that someone else may edit,
// holds text the user did not write.
func (s *wsState) fileOrigin(fs []wsFile) Origin {
	for _, f := range fs {
		if !strings.EqualFold(f.Owner, s.Account) {
			return ThirdParty
		}
		for _, p := range f.SharedWith {
			if p == "rw" {
				return ThirdParty
			}
		}
	}
	return Own
}

func (s *wsState) event(id string) (*wsEvent, error) {
	for i := range s.Events {
		if s.Events[i].ID == id {
			return &s.Events[i], nil
		}
	}
	return nil, fmt.Errorf("no event has the ID %q", id)
}

func (s *wsState) file(id string) (*wsFile, error) {
	for i := range s.Files {
		if s.Files[i].ID == id {
			return &s.Files[i], nil
		}
	}
	return nil, fmt.Errorf("no file has the ID %q", id)
}

func parseWSTime(name, v string) (time.Time, error) {
	t, err := time.Parse(wsTimeLayout, v)
	if err != nil {
		return t, fmt.Errorf("%s %q is not in the format YYYY-MM-DD HH:MM", name, v)
	}
	return t, nil
}

// Inputs and outputs.

type wsNone struct{}

type wsEmails struct {
	Emails []wsEmail `json:"emails"`
}

type wsEvents struct {
	Events []wsEvent `json:"events"`
}

type wsFiles struct {
	Files []wsFile `json:"files"`
}

type wsContacts struct {
	Contacts []wsContact `json:"contacts"`
}

type wsMessage struct {
	Message string `json:"message"`
}

type wsDay struct {
	Day string `json:"day" jsonschema:"the current day, YYYY-MM-DD"`
}

type wsSendIn struct {
	Recipients  []string       `json:"recipients" jsonschema:"the email addresses of the recipients"`
	Subject     string         `json:"subject" jsonschema:"the subject of the email"`
	Body        string         `json:"body" jsonschema:"the body of the email"`
	Attachments []wsAttachment `json:"attachments,omitempty" jsonschema:"files of the cloud drive ({type: file, file_id}) or events ({type: event, title, start_time}) to attach"`
	CC          []string       `json:"cc,omitempty" jsonschema:"addresses to copy"`
	BCC         []string       `json:"bcc,omitempty" jsonschema:"addresses to copy blind"`
}

type wsEmailIDIn struct {
	EmailID string `json:"email_id" jsonschema:"the ID of the email"`
}

type wsSearchEmailsIn struct {
	Query  string `json:"query" jsonschema:"text to find in the subject or the body; empty finds every email"`
	Sender string `json:"sender,omitempty" jsonschema:"only emails from this address"`
}

type wsQueryIn struct {
	Query string `json:"query" jsonschema:"what to search for"`
}

type wsSearchEventsIn struct {
	Query string `json:"query" jsonschema:"text to find in the title or the description"`
	Date  string `json:"date,omitempty" jsonschema:"only events that start on this day, YYYY-MM-DD"`
}

type wsDayIn struct {
	Day string `json:"day" jsonschema:"the day, YYYY-MM-DD"`
}

type wsCreateEventIn struct {
	Title        string   `json:"title" jsonschema:"the title of the event"`
	Start        string   `json:"start_time" jsonschema:"YYYY-MM-DD HH:MM"`
	End          string   `json:"end_time" jsonschema:"YYYY-MM-DD HH:MM"`
	Description  string   `json:"description,omitempty" jsonschema:"the description of the event"`
	Participants []string `json:"participants,omitempty" jsonschema:"the participants' email addresses; the owner of the calendar is always one"`
	Location     string   `json:"location,omitempty" jsonschema:"where the event is"`
}

type wsEventIDIn struct {
	EventID string `json:"event_id" jsonschema:"the ID of the event"`
}

type wsRescheduleIn struct {
	EventID  string `json:"event_id" jsonschema:"the ID of the event"`
	NewStart string `json:"new_start_time" jsonschema:"YYYY-MM-DD HH:MM"`
	NewEnd   string `json:"new_end_time,omitempty" jsonschema:"YYYY-MM-DD HH:MM; without it the event keeps its length"`
}

type wsParticipantsIn struct {
	EventID      string   `json:"event_id" jsonschema:"the ID of the event"`
	Participants []string `json:"participants" jsonschema:"the email addresses to add"`
}

type wsFileIDIn struct {
	FileID string `json:"file_id" jsonschema:"the ID of the file"`
}

type wsFilenameIn struct {
	Filename string `json:"filename" jsonschema:"text to find in file names"`
}

type wsCreateFileIn struct {
	Filename string `json:"filename" jsonschema:"the name of the new file"`
	Content  string `json:"content" jsonschema:"its content"`
}

type wsAppendIn struct {
	FileID  string `json:"file_id" jsonschema:"the ID of the file"`
	Content string `json:"content" jsonschema:"the text to add at its end"`
}

type wsShareIn struct {
	FileID     string `json:"file_id" jsonschema:"the ID of the file"`
	Email      string `json:"email" jsonschema:"the address to share it with"`
	Permission string `json:"permission" jsonschema:"r (read) or rw (read and write)"`
}

func registerWorkspace(srv *mcp.Server, env *Env) {
	view := func() (*wsState, error) {
		s, err := View[wsState](env)
		if err != nil {
			return nil, err
		}
		s.norm()
		return s, nil
	}
	// Calls come at once (a flow's for_each); Update makes each change
	// one step of its own.
	update := func(fn func(*wsState) error) error {
		return Update[wsState](env, func(s *wsState) error {
			s.norm()
			return fn(s)
		})
	}

	// Email.
	Tool(srv, env, &mcp.Tool{Name: "send_email", Description: "Sends an email from the user's account and returns it."},
		func(_ context.Context, in wsSendIn) (wsEmail, Origin, error) {
			var out wsEmail
			if len(in.Recipients) == 0 {
				return out, Own, fmt.Errorf("an email needs at least one recipient")
			}
			err := update(func(s *wsState) error {
				for _, a := range in.Attachments {
					if a.Type != "file" && a.Type != "event" {
						return fmt.Errorf("an attachment's type is file or event, not %q", a.Type)
					}
					if a.Type == "file" {
						if _, err := s.file(a.FileID); err != nil {
							return err
						}
					}
				}
				out = s.send(in.Recipients, in.CC, in.BCC, in.Subject, in.Body, in.Attachments)
				return nil
			})
			return out, Own, err
		})
	Tool(srv, env, &mcp.Tool{Name: "delete_email", Description: "Moves the email with the given ID to the trash."},
		func(_ context.Context, in wsEmailIDIn) (wsMessage, Origin, error) {
			err := update(func(s *wsState) error {
				for i, m := range s.Emails {
					if m.ID == in.EmailID {
						s.Trash = append(s.Trash, m)
						s.Emails = append(s.Emails[:i], s.Emails[i+1:]...)
						return nil
					}
				}
				return fmt.Errorf("no email has the ID %q", in.EmailID)
			})
			return wsMessage{Message: "Email " + in.EmailID + " moved to the trash."}, Own, err
		})
	Tool(srv, env, &mcp.Tool{Name: "get_unread_emails", Description: "Returns every unread email (sender, subject, body) and marks them read."},
		func(_ context.Context, _ wsNone) (wsEmails, Origin, error) {
			out := wsEmails{Emails: []wsEmail{}}
			var origin Origin
			err := update(func(s *wsState) error {
				for i := range s.Emails {
					if !s.Emails[i].Read {
						s.Emails[i].Read = true
						out.Emails = append(out.Emails, s.Emails[i])
					}
				}
				origin = s.mailOrigin(out.Emails)
				return nil
			})
			return out, origin, err
		})
	byStatus := func(status string) Handler[wsNone, wsEmails] {
		return func(_ context.Context, _ wsNone) (wsEmails, Origin, error) {
			s, err := view()
			if err != nil {
				return wsEmails{}, Own, err
			}
			out := wsEmails{Emails: []wsEmail{}}
			for _, m := range s.Emails {
				if m.Status == status {
					out.Emails = append(out.Emails, m)
				}
			}
			return out, s.mailOrigin(out.Emails), nil
		}
	}
	Tool(srv, env, &mcp.Tool{Name: "get_sent_emails", Description: "Returns every email the user sent."}, byStatus("sent"))
	Tool(srv, env, &mcp.Tool{Name: "get_received_emails", Description: "Returns every email the user received."}, byStatus("received"))
	Tool(srv, env, &mcp.Tool{Name: "get_draft_emails", Description: "Returns every draft."}, byStatus("draft"))
	Tool(srv, env, &mcp.Tool{Name: "search_emails", Description: "Finds the emails whose subject or body holds the query (case-insensitive), optionally only those from one sender. Finding none is an error."},
		func(_ context.Context, in wsSearchEmailsIn) (wsEmails, Origin, error) {
			s, err := view()
			if err != nil {
				return wsEmails{}, Own, err
			}
			q := strings.ToLower(in.Query)
			out := wsEmails{Emails: []wsEmail{}}
			for _, m := range s.Emails {
				if in.Sender != "" && !strings.EqualFold(m.Sender, in.Sender) {
					continue
				}
				if strings.Contains(strings.ToLower(m.Subject), q) || strings.Contains(strings.ToLower(m.Body), q) {
					out.Emails = append(out.Emails, m)
				}
			}
			if len(out.Emails) == 0 {
				return out, Own, fmt.Errorf("no email matches %q; try another query", in.Query)
			}
			return out, s.mailOrigin(out.Emails), nil
		})
	contacts := func(field func(wsContact) string) Handler[wsQueryIn, wsContacts] {
		return func(_ context.Context, in wsQueryIn) (wsContacts, Origin, error) {
			s, err := view()
			if err != nil {
				return wsContacts{}, Own, err
			}
			out := wsContacts{Contacts: []wsContact{}}
			for _, c := range s.Contacts {
				if strings.Contains(strings.ToLower(field(c)), strings.ToLower(in.Query)) {
					out.Contacts = append(out.Contacts, c)
				}
			}
			if len(out.Contacts) == 0 {
				return out, Own, fmt.Errorf("no contact matches %q", in.Query)
			}
			return out, Own, nil
		}
	}
	Tool(srv, env, &mcp.Tool{Name: "search_contacts_by_name", Description: "Finds the user's contacts whose name holds the query."},
		contacts(func(c wsContact) string { return c.Name }))
	Tool(srv, env, &mcp.Tool{Name: "search_contacts_by_email", Description: "Finds the user's contacts whose address holds the query."},
		contacts(func(c wsContact) string { return c.Email }))

	// Calendar.
	Tool(srv, env, &mcp.Tool{Name: "get_current_day", Description: "Returns the current day (YYYY-MM-DD): never assume it."},
		func(_ context.Context, _ wsNone) (wsDay, Origin, error) {
			s, err := view()
			if err != nil {
				return wsDay{}, Own, err
			}
			return wsDay{Day: s.CurrentDay}, Own, nil
		})
	Tool(srv, env, &mcp.Tool{Name: "search_calendar_events", Description: "Finds the events whose title or description holds the query, optionally only those on one day. Finding none is an error."},
		func(_ context.Context, in wsSearchEventsIn) (wsEvents, Origin, error) {
			s, err := view()
			if err != nil {
				return wsEvents{}, Own, err
			}
			if in.Date != "" {
				if _, err := time.Parse("2006-01-02", in.Date); err != nil {
					return wsEvents{}, Own, fmt.Errorf("date %q is not in the format YYYY-MM-DD", in.Date)
				}
			}
			q := strings.ToLower(in.Query)
			out := wsEvents{Events: []wsEvent{}}
			for _, e := range s.Events {
				if in.Date != "" && !strings.HasPrefix(e.Start, in.Date) {
					continue
				}
				if strings.Contains(strings.ToLower(e.Title), q) || strings.Contains(strings.ToLower(e.Description), q) {
					out.Events = append(out.Events, e)
				}
			}
			if len(out.Events) == 0 {
				return out, Own, fmt.Errorf("no event matches %q; try another query", in.Query)
			}
			return out, s.eventOrigin(out.Events), nil
		})
	Tool(srv, env, &mcp.Tool{Name: "get_day_calendar_events", Description: "Returns the events of one day (YYYY-MM-DD), in order of their start."},
		func(_ context.Context, in wsDayIn) (wsEvents, Origin, error) {
			if _, err := time.Parse("2006-01-02", in.Day); err != nil {
				return wsEvents{}, Own, fmt.Errorf("day %q is not in the format YYYY-MM-DD", in.Day)
			}
			s, err := view()
			if err != nil {
				return wsEvents{}, Own, err
			}
			out := wsEvents{Events: []wsEvent{}}
			for _, e := range s.Events {
				if strings.HasPrefix(e.Start, in.Day) {
					out.Events = append(out.Events, e)
				}
			}
			sort.SliceStable(out.Events, func(i, j int) bool { return out.Events[i].Start < out.Events[j].Start })
			return out, s.eventOrigin(out.Events), nil
		})
	Tool(srv, env, &mcp.Tool{Name: "create_calendar_event", Description: "Adds an event to the calendar and mails an invitation to its participants."},
		func(_ context.Context, in wsCreateEventIn) (wsEvent, Origin, error) {
			start, err := parseWSTime("start_time", in.Start)
			if err != nil {
				return wsEvent{}, Own, err
			}
			end, err := parseWSTime("end_time", in.End)
			if err != nil {
				return wsEvent{}, Own, err
			}
			if end.Before(start) {
				return wsEvent{}, Own, fmt.Errorf("end_time %s is before start_time %s", in.End, in.Start)
			}
			var out wsEvent
			err = update(func(s *wsState) error {
				ids := []string{}
				for _, e := range s.Events {
					ids = append(ids, e.ID)
				}
				participants := []string{}
				seen := map[string]bool{}
				for _, p := range append(append([]string{}, in.Participants...), s.Account) {
					if !seen[strings.ToLower(p)] {
						seen[strings.ToLower(p)] = true
						participants = append(participants, p)
					}
				}
				out = wsEvent{
					ID: wsNextID(ids), Title: in.Title, Description: in.Description, Start: in.Start, End: in.End,
					Location: in.Location, Participants: participants, Status: "confirmed", Organizer: s.Account,
				}
				s.Events = append(s.Events, out)
				if len(in.Participants) > 0 {
					s.send(in.Participants, nil, nil, "Invitation: "+in.Title, in.Description,
						[]wsAttachment{{Type: "event", Title: in.Title, Start: in.Start}})
				}
				return nil
			})
			return out, Own, err
		})
	Tool(srv, env, &mcp.Tool{Name: "cancel_calendar_event", Description: "Cancels the event and mails its participants that it is canceled."},
		func(_ context.Context, in wsEventIDIn) (wsMessage, Origin, error) {
			err := update(func(s *wsState) error {
				e, err := s.event(in.EventID)
				if err != nil {
					return err
				}
				e.Status = "canceled"
				s.send(e.Participants, nil, nil, "Canceled: "+e.Title, "The event is canceled.",
					[]wsAttachment{{Type: "event", Title: e.Title, Start: e.Start}})
				return nil
			})
			return wsMessage{Message: "Event " + in.EventID + " is canceled and its participants were told."}, Own, err
		})
	Tool(srv, env, &mcp.Tool{Name: "reschedule_calendar_event", Description: "Moves the event to a new start (and end) and mails its participants the new time."},
		func(_ context.Context, in wsRescheduleIn) (wsEvent, Origin, error) {
			start, err := parseWSTime("new_start_time", in.NewStart)
			if err != nil {
				return wsEvent{}, Own, err
			}
			var out wsEvent
			var origin Origin
			err = update(func(s *wsState) error {
				e, err := s.event(in.EventID)
				if err != nil {
					return err
				}
				oldStart, err := parseWSTime("start_time", e.Start)
				if err != nil {
					return err
				}
				oldEnd, err := parseWSTime("end_time", e.End)
				if err != nil {
					return err
				}
				end := start.Add(oldEnd.Sub(oldStart))
				if in.NewEnd != "" {
					if end, err = parseWSTime("new_end_time", in.NewEnd); err != nil {
						return err
					}
					if end.Before(start) {
						return fmt.Errorf("new_end_time %s is before new_start_time %s", in.NewEnd, in.NewStart)
					}
				}
				e.Start, e.End = start.Format(wsTimeLayout), end.Format(wsTimeLayout)
				out = *e
				origin = s.eventOrigin([]wsEvent{out})
				s.send(e.Participants, nil, nil, "Rescheduled: "+e.Title,
					"The event now starts at "+e.Start+" and ends at "+e.End+".",
					[]wsAttachment{{Type: "event", Title: e.Title, Start: e.Start}})
				return nil
			})
			return out, origin, err
		})
	Tool(srv, env, &mcp.Tool{Name: "add_calendar_event_participants", Description: "Adds participants to the event; they are mailed its details."},
		func(_ context.Context, in wsParticipantsIn) (wsEvent, Origin, error) {
			var out wsEvent
			var origin Origin
			err := update(func(s *wsState) error {
				e, err := s.event(in.EventID)
				if err != nil {
					return err
				}
				e.Participants = append(e.Participants, in.Participants...)
				out = *e
				origin = s.eventOrigin([]wsEvent{out})
				return nil
			})
			return out, origin, err
		})

	// Cloud drive.
	Tool(srv, env, &mcp.Tool{Name: "append_to_file", Description: "Adds text at the end of a file of the cloud drive."},
		func(_ context.Context, in wsAppendIn) (wsFile, Origin, error) {
			var out wsFile
			var origin Origin
			err := update(func(s *wsState) error {
				f, err := s.file(in.FileID)
				if err != nil {
					return err
				}
				f.Content += in.Content
				f.Size = len(f.Content)
				f.LastModified = s.Now
				out = *f
				origin = s.fileOrigin([]wsFile{out})
				return nil
			})
			return out, origin, err
		})
	Tool(srv, env, &mcp.Tool{Name: "search_files_by_filename", Description: "Finds the files of the cloud drive whose name holds the text (case-insensitive), with their ID and content."},
		func(_ context.Context, in wsFilenameIn) (wsFiles, Origin, error) {
			s, err := view()
			if err != nil {
				return wsFiles{}, Own, err
			}
			out := wsFiles{Files: []wsFile{}}
			for _, f := range s.Files {
				if strings.Contains(strings.ToLower(f.Filename), strings.ToLower(in.Filename)) {
					out.Files = append(out.Files, f)
				}
			}
			return out, s.fileOrigin(out.Files), nil
		})
	Tool(srv, env, &mcp.Tool{Name: "create_file", Description: "Creates a file in the cloud drive."},
		func(_ context.Context, in wsCreateFileIn) (wsFile, Origin, error) {
			var out wsFile
			err := update(func(s *wsState) error {
				ids := []string{}
				for _, f := range s.Files {
					ids = append(ids, f.ID)
				}
				out = wsFile{
					ID: wsNextID(ids), Filename: in.Filename, Content: in.Content, Owner: s.Account,
					LastModified: s.Now, Size: len(in.Content), SharedWith: map[string]string{},
				}
				s.Files = append(s.Files, out)
				return nil
			})
			return out, Own, err
		})
	Tool(srv, env, &mcp.Tool{Name: "delete_file", Description: "Deletes the file with the given ID from the cloud drive and returns it."},
		func(_ context.Context, in wsFileIDIn) (wsFile, Origin, error) {
			var out wsFile
			var origin Origin
			err := update(func(s *wsState) error {
				for i, f := range s.Files {
					if f.ID == in.FileID {
						out = f
						origin = s.fileOrigin([]wsFile{f})
						s.Files = append(s.Files[:i], s.Files[i+1:]...)
						return nil
					}
				}
				return fmt.Errorf("no file has the ID %q", in.FileID)
			})
			return out, origin, err
		})
	Tool(srv, env, &mcp.Tool{Name: "get_file_by_id", Description: "Returns the file with the given ID."},
		func(_ context.Context, in wsFileIDIn) (wsFile, Origin, error) {
			s, err := view()
			if err != nil {
				return wsFile{}, Own, err
			}
			f, err := s.file(in.FileID)
			if err != nil {
				return wsFile{}, Own, err
			}
			return *f, s.fileOrigin([]wsFile{*f}), nil
		})
	Tool(srv, env, &mcp.Tool{Name: "list_files", Description: "Returns every file of the cloud drive."},
		func(_ context.Context, _ wsNone) (wsFiles, Origin, error) {
			s, err := view()
			if err != nil {
				return wsFiles{}, Own, err
			}
			return wsFiles{Files: s.Files}, s.fileOrigin(s.Files), nil
		})
	Tool(srv, env, &mcp.Tool{Name: "share_file", Description: "Shares a file with someone, with permission r or rw."},
		func(_ context.Context, in wsShareIn) (wsFile, Origin, error) {
			if in.Permission != "r" && in.Permission != "rw" {
				return wsFile{}, Own, fmt.Errorf("permission is r or rw, not %q", in.Permission)
			}
			var out wsFile
			var origin Origin
			err := update(func(s *wsState) error {
				f, err := s.file(in.FileID)
				if err != nil {
					return err
				}
				f.SharedWith[in.Email] = in.Permission
				out = *f
				origin = s.fileOrigin([]wsFile{out})
				return nil
			})
			return out, origin, err
		})
	Tool(srv, env, &mcp.Tool{Name: "search_files", Description: "Finds the files of the cloud drive whose content holds the query (case-insensitive). Finding none is an error."},
		func(_ context.Context, in wsQueryIn) (wsFiles, Origin, error) {
			s, err := view()
			if err != nil {
				return wsFiles{}, Own, err
			}
			out := wsFiles{Files: []wsFile{}}
			for _, f := range s.Files {
				if strings.Contains(strings.ToLower(f.Content), strings.ToLower(in.Query)) {
					out.Files = append(out.Files, f)
				}
			}
			if len(out.Files) == 0 {
				return out, Own, fmt.Errorf("no file holds %q; try another query", in.Query)
			}
			return out, s.fileOrigin(out.Files), nil
		})
}
