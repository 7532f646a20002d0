// Package export turns the diary entries selected for one research export
// into the files researchers open: CSV, JSON Lines and a REFI-QDA project
// (.qdpx) for NVivo, ATLAS.ti, MAXQDA and QualCoder.
//
// The package knows nothing of the database or of Connect. Its caller
// reads the entries shared for research from one snapshot, pseudonymised
// (the author is a study code, nothing else), and hands them over as
// Records, with the Manifest that describes the snapshot. The writers
// stream: memory does not grow with the number of entries, so a study of
// 100,000 entries exports as easily as one of ten.
//
// # Reading the records more than once
//
// A REFI-QDA project lists every case, every source and every set in one
// XML file, in an order the schema fixes (cases before sources before
// sets), while each entry's text is a separate file in the same archive.
// Holding all of that in memory would grow with the study, and spooling
// it to a temporary file would put diary content on the server's disk,
// outside the database that erasure cleans. So WriteQDPX reads the records
// several times instead, each time asking, through a Pass, only for what
// that reading needs. Records must therefore give the same records in
// the same order every time it is called: the caller reads them inside
// one read transaction. The one temporary file WriteQDPX does use holds
// the zip archive's directory (file names, which are GUIDs, sizes and
// checksums), which would otherwise grow in memory with every entry.
//
// # Checks
//
// Every writer checks what it is given before writing it: records in
// order, each in a wave the manifest covers and dated inside that wave's
// window, with a valid entry id, and as many records as the manifest
// counts. A failed check is an error, never a silently different file,
// because researchers cite exports.
package export
