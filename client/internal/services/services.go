// Package services hands the administration and research services of an
// enrolled client to client/operator. They are not part of the client's
// own API, which is what a phone app binds; client registers Of when it
// is initialised.
package services

import "github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"

// Of returns the administration and research services of c, a
// *client.Client, sending its device's token. It fails as the client's
// own calls do when the client is closed or not enrolled.
var Of func(c any) (diaryv1connect.AdminServiceClient, diaryv1connect.ResearchServiceClient, error)
