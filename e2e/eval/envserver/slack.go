package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The slack suite: a chat workspace run by the user's bot account, and
// the web. The tools are AgentDojo's slack suite's, with the same names,
// arguments and meaning.

func init() { suites["slack"] = registerSlack }

// slackBot is the account the user's assistant writes as. A message, a
// channel name or an invitation from any other account was written by
// someone else.
const slackBot = "bot"

// slackState is the whole environment.
type slackState struct {
	Slack slackWorkspace `json:"slack"`
	Web   slackWeb       `json:"web"`
}

type slackWorkspace struct {
	Users    []string `json:"users"`
	Channels []string `json:"channels"`
	// ChannelCreators names who created each channel (and so chose its
	// name); a channel not listed was created by the bot.
	ChannelCreators []slackCreator            `json:"channel_creators"`
	UserChannels    map[string][]string       `json:"user_channels"`
	UserInbox       map[string][]slackMessage `json:"user_inbox"`
	ChannelInbox    map[string][]slackMessage `json:"channel_inbox"`
	// Invites records every invitation sent, so that a run that invites
	// someone and removes them again is still seen to have invited them.
	Invites []slackInvite `json:"invites"`
}

type slackCreator struct {
	Channel string `json:"channel"`
	By      string `json:"by"`
}

type slackMessage struct {
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	Body      string `json:"body"`
}

type slackInvite struct {
	User  string `json:"user"`
	Email string `json:"email"`
}

type slackWeb struct {
	Content  map[string]string `json:"web_content"`
	Requests []string          `json:"web_requests"`
}

type slackChannelIn struct {
	Channel string `json:"channel" jsonschema:"the channel"`
}

type slackUserIn struct {
	User string `json:"user" jsonschema:"the user"`
}

type slackUserChannelIn struct {
	User    string `json:"user" jsonschema:"the user to add to the channel"`
	Channel string `json:"channel" jsonschema:"the channel to add the user to"`
}

type slackDirectIn struct {
	Recipient string `json:"recipient" jsonschema:"the user who receives the message"`
	Body      string `json:"body" jsonschema:"the text of the message"`
}

type slackChannelMessageIn struct {
	Channel string `json:"channel" jsonschema:"the channel to write to"`
	Body    string `json:"body" jsonschema:"the text of the message"`
}

type slackInviteIn struct {
	User      string `json:"user" jsonschema:"the name the new user will have in the workspace"`
	UserEmail string `json:"user_email" jsonschema:"the address the invitation is sent to"`
}

type slackURLIn struct {
	URL string `json:"url" jsonschema:"the page's URL"`
}

type slackPostIn struct {
	URL     string `json:"url" jsonschema:"the page's URL"`
	Content string `json:"content" jsonschema:"the page's new content"`
}

type slackChannelsOut struct {
	Channels []string `json:"channels"`
}

type slackUsersOut struct {
	Channel string   `json:"channel"`
	Users   []string `json:"users"`
}

// slackMessagesOut is a channel's messages (Channel set) or a user's
// inbox (User set).
type slackMessagesOut struct {
	Channel  string         `json:"channel,omitempty"`
	User     string         `json:"user,omitempty"`
	Messages []slackMessage `json:"messages"`
}

type slackPageOut struct {
	URL     string `json:"url"`
	Content string `json:"content"`
}

type slackInviteOut struct {
	User  string `json:"user"`
	Email string `json:"email"`
}

type slackDoneOut struct {
	Done string `json:"done"`
}

func registerSlack(s *mcp.Server, e *Env) {
	Tool(s, e, &mcp.Tool{Name: "get_channels", Description: "Lists the channels of the workspace."},
		func(_ context.Context, _ struct{}) (slackChannelsOut, Origin, error) {
			st, err := slackView(e)
			if err != nil {
				return slackChannelsOut{}, Own, err
			}
			origin := Own
			for _, c := range st.Slack.ChannelCreators {
				if c.By != slackBot && slices.Contains(st.Slack.Channels, c.Channel) {
					origin = ThirdParty
				}
			}
			return slackChannelsOut{Channels: slackNonNil(st.Slack.Channels)}, origin, nil
		})

	Tool(s, e, &mcp.Tool{Name: "get_users_in_channel", Description: "Lists the members of a channel."},
		func(_ context.Context, in slackChannelIn) (slackUsersOut, Origin, error) {
			st, err := slackView(e)
			if err != nil {
				return slackUsersOut{}, Own, err
			}
			if !slices.Contains(st.Slack.Channels, in.Channel) {
				return slackUsersOut{}, Own, fmt.Errorf("there is no channel %q", in.Channel)
			}
			users := []string{}
			for _, u := range st.Slack.Users {
				if slices.Contains(st.Slack.UserChannels[u], in.Channel) {
					users = append(users, u)
				}
			}
			return slackUsersOut{Channel: in.Channel, Users: users}, Own, nil
		})

	Tool(s, e, &mcp.Tool{Name: "read_channel_messages", Description: "Reads the messages of a channel."},
		func(_ context.Context, in slackChannelIn) (slackMessagesOut, Origin, error) {
			st, err := slackView(e)
			if err != nil {
				return slackMessagesOut{}, Own, err
			}
			if !slices.Contains(st.Slack.Channels, in.Channel) {
				return slackMessagesOut{}, Own, fmt.Errorf("there is no channel %q", in.Channel)
			}
			msgs := slackNonNil(st.Slack.ChannelInbox[in.Channel])
			return slackMessagesOut{Channel: in.Channel, Messages: msgs}, slackOrigin(msgs), nil
		})

	Tool(s, e, &mcp.Tool{Name: "read_inbox", Description: "Reads the direct messages a user received."},
		func(_ context.Context, in slackUserIn) (slackMessagesOut, Origin, error) {
			st, err := slackView(e)
			if err != nil {
				return slackMessagesOut{}, Own, err
			}
			if !slices.Contains(st.Slack.Users, in.User) {
				return slackMessagesOut{}, Own, fmt.Errorf("there is no user %q", in.User)
			}
			msgs := slackNonNil(st.Slack.UserInbox[in.User])
			return slackMessagesOut{User: in.User, Messages: msgs}, slackOrigin(msgs), nil
		})

	Tool(s, e, &mcp.Tool{Name: "send_direct_message", Description: "Sends a direct message from the bot to a user."},
		func(_ context.Context, in slackDirectIn) (slackDoneOut, Origin, error) {
			err := slackUpdate(e, func(st *slackState) error {
				if !slices.Contains(st.Slack.Users, in.Recipient) {
					return fmt.Errorf("there is no user %q", in.Recipient)
				}
				if st.Slack.UserInbox == nil {
					st.Slack.UserInbox = map[string][]slackMessage{}
				}
				st.Slack.UserInbox[in.Recipient] = append(st.Slack.UserInbox[in.Recipient],
					slackMessage{Sender: slackBot, Recipient: in.Recipient, Body: in.Body})
				return nil
			})
			return slackDoneOut{Done: "sent to " + in.Recipient}, Own, err
		})

	Tool(s, e, &mcp.Tool{Name: "send_channel_message", Description: "Posts a message from the bot in a channel."},
		func(_ context.Context, in slackChannelMessageIn) (slackDoneOut, Origin, error) {
			err := slackUpdate(e, func(st *slackState) error {
				if !slices.Contains(st.Slack.Channels, in.Channel) {
					return fmt.Errorf("there is no channel %q", in.Channel)
				}
				if st.Slack.ChannelInbox == nil {
					st.Slack.ChannelInbox = map[string][]slackMessage{}
				}
				st.Slack.ChannelInbox[in.Channel] = append(st.Slack.ChannelInbox[in.Channel],
					slackMessage{Sender: slackBot, Recipient: in.Channel, Body: in.Body})
				return nil
			})
			return slackDoneOut{Done: "posted in " + in.Channel}, Own, err
		})

	Tool(s, e, &mcp.Tool{Name: "add_user_to_channel", Description: "Adds a member of the workspace to a channel."},
		func(_ context.Context, in slackUserChannelIn) (slackDoneOut, Origin, error) {
			err := slackUpdate(e, func(st *slackState) error {
				if !slices.Contains(st.Slack.Users, in.User) {
					return fmt.Errorf("there is no user %q", in.User)
				}
				if !slices.Contains(st.Slack.Channels, in.Channel) {
					return fmt.Errorf("there is no channel %q", in.Channel)
				}
				if st.Slack.UserChannels == nil {
					st.Slack.UserChannels = map[string][]string{}
				}
				if !slices.Contains(st.Slack.UserChannels[in.User], in.Channel) {
					st.Slack.UserChannels[in.User] = append(st.Slack.UserChannels[in.User], in.Channel)
				}
				return nil
			})
			return slackDoneOut{Done: in.User + " is in " + in.Channel}, Own, err
		})

	Tool(s, e, &mcp.Tool{Name: "invite_user_to_slack", Description: "Invites someone to the workspace: the invitation is mailed to user_email, and the user joins under the name user."},
		func(_ context.Context, in slackInviteIn) (slackInviteOut, Origin, error) {
			err := slackUpdate(e, func(st *slackState) error {
				if slices.Contains(st.Slack.Users, in.User) {
					return fmt.Errorf("%q is already a member", in.User)
				}
				st.Slack.Users = append(st.Slack.Users, in.User)
				if st.Slack.UserInbox == nil {
					st.Slack.UserInbox = map[string][]slackMessage{}
				}
				st.Slack.UserInbox[in.User] = []slackMessage{}
				if st.Slack.UserChannels == nil {
					st.Slack.UserChannels = map[string][]string{}
				}
				st.Slack.UserChannels[in.User] = []string{}
				st.Slack.Invites = append(st.Slack.Invites, slackInvite{User: in.User, Email: in.UserEmail})
				return nil
			})
			return slackInviteOut{User: in.User, Email: in.UserEmail}, Own, err
		})

	Tool(s, e, &mcp.Tool{Name: "remove_user_from_slack", Description: "Removes a member from the workspace."},
		func(_ context.Context, in slackUserIn) (slackDoneOut, Origin, error) {
			err := slackUpdate(e, func(st *slackState) error {
				i := slices.Index(st.Slack.Users, in.User)
				if i < 0 {
					return fmt.Errorf("there is no user %q", in.User)
				}
				st.Slack.Users = slices.Delete(st.Slack.Users, i, i+1)
				delete(st.Slack.UserInbox, in.User)
				delete(st.Slack.UserChannels, in.User)
				return nil
			})
			return slackDoneOut{Done: "removed " + in.User}, Own, err
		})

	Tool(s, e, &mcp.Tool{Name: "get_webpage", Description: "Reads the web page at a URL."},
		func(_ context.Context, in slackURLIn) (slackPageOut, Origin, error) {
			url := slackURL(in.URL)
			var content string
			err := slackUpdate(e, func(st *slackState) error {
				st.Web.Requests = append(st.Web.Requests, url)
				c, ok := st.Web.Content[url]
				if !ok {
					c = "404 Not Found"
				}
				content = c
				return nil
			})
			return slackPageOut{URL: url, Content: content}, ThirdParty, err
		})

	Tool(s, e, &mcp.Tool{Name: "post_webpage", Description: "Publishes content as the web page at a URL."},
		func(_ context.Context, in slackPostIn) (slackDoneOut, Origin, error) {
			url := slackURL(in.URL)
			err := slackUpdate(e, func(st *slackState) error {
				st.Web.Requests = append(st.Web.Requests, url)
				if st.Web.Content == nil {
					st.Web.Content = map[string]string{}
				}
				st.Web.Content[url] = in.Content
				return nil
			})
			return slackDoneOut{Done: "published " + url}, Own, err
		})
}

// slackMu serializes the calls on the environment: the server answers
// several calls at once (a flow's parallel steps, a for_each), and each
// change is a read, a change and a write of the whole state, which two
// calls must not interleave (one change would be lost, or the two would
// write the same temporary file).
var slackMu sync.Mutex

func slackView(e *Env) (*slackState, error) {
	slackMu.Lock()
	defer slackMu.Unlock()
	return View[slackState](e)
}

func slackUpdate(e *Env, fn func(*slackState) error) error {
	slackMu.Lock()
	defer slackMu.Unlock()
	return Update(e, fn)
}

// slackOrigin: messages from any account but the bot's were written by
// someone else.
func slackOrigin(msgs []slackMessage) Origin {
	for _, m := range msgs {
		if m.Sender != slackBot {
			return ThirdParty
		}
	}
	return Own
}

// slackURL drops the scheme, so that http://x, https://x and x are one page.
func slackURL(u string) string {
	u = strings.TrimPrefix(u, "https://")
	return strings.TrimPrefix(u, "http://")
}

func slackNonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
