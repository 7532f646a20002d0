package export

import "github.com/diarysync/diarysync/study"

// lineFeeds writes every line break of s as LF; see study.LineFeeds.
func lineFeeds(s string) string { return study.LineFeeds(s) }

// plainText prepares text for a REFI-QDA project; see study.PlainText,
// which also gives the text every manifest hashes.
func plainText(s string) string { return study.PlainText(s) }
