package client

import (
	"context"
	"fmt"
	"strings"

	"github.com/diarysync/diarysync/syncengine"
)

// listFilter turns the filters and page token of o into SQL conditions
// on the entries table, ANDed together, and their arguments. List and
// Search share it, so that a filter means the same in both.
func listFilter(o ListOptions) (where []string, args []any, err error) {
	if o.From != "" {
		if err := syncengine.ValidateDate(o.From); err != nil {
			return nil, nil, err
		}
		where, args = append(where, "entries.date >= ?"), append(args, o.From)
	}
	if o.To != "" {
		if err := syncengine.ValidateDate(o.To); err != nil {
			return nil, nil, err
		}
		where, args = append(where, "entries.date <= ?"), append(args, o.To)
	}
	if o.Tag != "" {
		where, args = append(where, "entries.id IN (SELECT entry FROM entry_tags WHERE tag = ?)"), append(args, o.Tag)
	}
	switch o.Sharing {
	case SharedSupervisor:
		where = append(where, "entries.share_supervisor = 1")
	case SharedResearch:
		where = append(where, "entries.share_research = 1")
	case SharedWithAnyone:
		where = append(where, "(entries.share_supervisor = 1 OR entries.share_research = 1)")
	case SharedWithNoone:
		where = append(where, "entries.share_supervisor = 0 AND entries.share_research = 0")
	}
	switch o.Deleted {
	case HideDeleted:
		where = append(where, "entries.deleted = 0")
	case OnlyDeleted:
		where = append(where, "entries.deleted = 1")
	}
	if o.Unread {
		where = append(where, "entries.read_at IS NULL")
	}
	if o.PageToken != "" {
		date, id, err := decodeListToken(o.PageToken)
		if err != nil {
			return nil, nil, err
		}
		where, args = append(where, "(entries.date, entries.id) < (?, ?)"), append(args, date, id)
	}
	return where, args, nil
}

// pageLimit is the page size asked for, within what one page may hold.
func pageLimit(n int) int {
	switch {
	case n <= 0:
		return 50
	case n > 1000:
		return 1000
	}
	return n
}

// CountEntries counts the entries that List with o would return over all
// its pages (o's Limit and PageToken aside): an inbox's unread badge, for
// one.
func (c *Client) CountEntries(ctx context.Context, o ListOptions) (int, error) {
	o.PageToken = ""
	where, args, err := listFilter(o)
	if err != nil {
		return 0, err
	}
	q := `SELECT count(*) FROM entries`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	var n int
	if err := c.db.Read.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("cannot count entries: %w", err)
	}
	return n, nil
}
