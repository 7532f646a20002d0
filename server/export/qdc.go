package export

import (
	"encoding/xml"
	"fmt"
	"io"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// qdcNamespace is the XML namespace of a REFI-QDA codebook.
const qdcNamespace = "urn:QDA-XML:codebook:1.0"

// WriteQDC writes the codebook of the records alone, as a REFI-QDA
// codebook exchange file (.qdc) valid against Codebook.xsd: one codable
// code per tag the exported entries carry, in alphabetical order, with
// the same GUIDs as the codes of a .qdpx of the same entries, so that a
// team can load the navigators' tags into a project first and import
// coded exports into it later.
//
// The schema requires at least one code, so entries that carry no tag
// at all give an ENOTFOUND error that says so, not an invalid file.
func WriteQDC(w io.Writer, m study.Manifest, recs study.Records) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot export codebook: %w", err)
	}
	tags, err := collectTags(c, recs)
	if err != nil {
		return fmt.Errorf("cannot export codebook: %w", err)
	}
	if len(tags) == 0 {
		if m.Empty() {
			return syncengine.Errorf(syncengine.ENOTFOUND, "this export holds no entries, so it has no tags for a codebook")
		}
		return syncengine.Errorf(syncengine.ENOTFOUND, "none of the %d entries exported carries a tag, so there is no code for a codebook", m.Entries)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("cannot write codebook: %w", err)
	}
	q := &qdeWriter{enc: xml.NewEncoder(w)}
	q.enc.Indent("", "  ")
	root := xml.Name{Space: qdcNamespace, Local: "CodeBook"}
	q.startName(root, "origin", "diarysync")
	writeCodes(q, tags)
	q.endName(root)
	if q.err != nil {
		return fmt.Errorf("cannot write codebook: %w", q.err)
	}
	if err := q.enc.Close(); err != nil {
		return fmt.Errorf("cannot write codebook: %w", err)
	}
	_, err = io.WriteString(w, "\n")
	return err
}
