// Package operator gives administrators and researchers the server's
// administration and research services through an enrolled client. The
// client package itself leaves them out: it is what a navigator's or a
// supervisor's app holds, and they need none of it. The services speak
// the API's own messages; the server refuses every call unless the
// device's user has the role it needs.
package operator

import (
	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/client/internal/services"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
)

// Admin returns a client of the administration service that sends c's
// device token; the server refuses it unless the user is an
// administrator.
func Admin(c *client.Client) (diaryv1connect.AdminServiceClient, error) {
	admin, _, err := services.Of(c)
	return admin, err
}

// Research returns a client of the research service that sends c's device
// token; the server refuses it unless the user is a researcher.
func Research(c *client.Client) (diaryv1connect.ResearchServiceClient, error) {
	_, research, err := services.Of(c)
	return research, err
}
