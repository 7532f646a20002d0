package export

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"time"
)

// zipStream writes a zip archive as a stream, one file after another,
// with memory that does not grow with the number of files.
//
// archive/zip keeps a header of about 300 bytes per file in memory until
// Close writes the central directory; a .qdpx holds one file per entry,
// so that would grow with the study. zipStream writes each file's
// central-directory record to a temporary file as soon as the file is
// done, and copies it to the output at the end. The temporary file holds
// only what the central directory holds (file names, which are GUIDs,
// sizes, checksums and offsets), never diary content.
//
// The archive is the one archive/zip writes for the same files: deflated
// files with data descriptors, an extended-timestamp field, and ZIP64
// records when sizes, offsets or the number of files need them.
type zipStream struct {
	out      *bufio.Writer
	written  uint64 // bytes written to out
	dir      *os.File
	dirBuf   *bufio.Writer
	dirBytes uint64
	files    uint64
	dosDate  uint16
	dosTime  uint16
	unixTime uint32
	comp     *flate.Writer
	cur      *zipFile // the file being written, or nil
	closed   bool
	buf      []byte
}

// zipFile is the file a zipStream is writing.
type zipFile struct {
	z         *zipStream
	name      string
	offset    uint64 // of the local header
	dataStart uint64
	crc       hash.Hash32
	size      uint64 // uncompressed
}

// Zip format constants (APPNOTE.TXT).
const (
	zipLocalSig     = 0x04034b50
	zipCentralSig   = 0x02014b50
	zipDescSig      = 0x08074b50
	zipEndSig       = 0x06054b50
	zip64EndSig     = 0x06064b50
	zip64LocSig     = 0x07064b50
	zipVersion20    = 20
	zipVersion45    = 45
	zipFlagDesc     = 0x0008 // sizes and CRC follow the data
	zipDeflate      = 8
	zipExtTimeID    = 0x5455
	zip64ExtraID    = 0x0001
	zipMax16        = math.MaxUint16
	zipMax32        = math.MaxUint32
	zip64EndLen     = 56
	zip64LocatorLen = 20
)

// newZipStream starts an archive on w whose files are all modified at
// mod. Call close to finish it and discard in every case.
func newZipStream(w io.Writer, mod time.Time) (*zipStream, error) {
	dir, err := os.CreateTemp("", "diarysync-export-*.zipdir")
	if err != nil {
		return nil, fmt.Errorf("cannot create temporary file for the zip directory: %w", err)
	}
	// Unlinked at once where the system allows, so that nothing is left
	// behind even if the process dies; discard removes it otherwise.
	_ = os.Remove(dir.Name())
	comp, err := flate.NewWriter(nil, flate.DefaultCompression)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("cannot start compressor: %w", err)
	}
	z := &zipStream{
		out:    bufio.NewWriterSize(w, 64<<10),
		dir:    dir,
		dirBuf: bufio.NewWriterSize(dir, 64<<10),
		comp:   comp,
	}
	z.dosDate, z.dosTime = msDosTime(mod)
	if u := mod.Unix(); u > 0 && u <= zipMax32 {
		z.unixTime = uint32(u)
	}
	return z, nil
}

// msDosTime converts t, in UTC, to the date and time fields of a zip
// header, clamped to the years they can hold (1980 to 2107).
func msDosTime(t time.Time) (date, tm uint16) {
	t = t.UTC()
	switch {
	case t.Year() < 1980:
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	case t.Year() > 2107:
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date = uint16(t.Day() + int(t.Month())<<5 + (t.Year()-1980)<<9)
	tm = uint16(t.Second()/2 + t.Minute()<<5 + t.Hour()<<11)
	return date, tm
}

// Write writes p to the archive's output, counting the bytes.
func (z *zipStream) Write(p []byte) (int, error) {
	n, err := z.out.Write(p)
	z.written += uint64(n)
	return n, err
}

// extra returns the extended-timestamp field every file carries.
func (z *zipStream) extra(b []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, zipExtTimeID)
	b = binary.LittleEndian.AppendUint16(b, 5)
	b = append(b, 1) // flags: modification time present
	return binary.LittleEndian.AppendUint32(b, z.unixTime)
}

// create starts the next file, finishing the previous one. The returned
// writer is valid until the next create or close.
func (z *zipStream) create(name string) (io.Writer, error) {
	if z.closed {
		return nil, errors.New("zip archive already closed")
	}
	if len(name) > zipMax16 {
		return nil, fmt.Errorf("zip file name of %d bytes is too long", len(name))
	}
	if err := z.finish(); err != nil {
		return nil, err
	}
	f := &zipFile{z: z, name: name, offset: z.written, crc: crc32.NewIEEE()}
	b := z.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, zipLocalSig)
	b = binary.LittleEndian.AppendUint16(b, zipVersion20)
	b = binary.LittleEndian.AppendUint16(b, zipFlagDesc)
	b = binary.LittleEndian.AppendUint16(b, zipDeflate)
	b = binary.LittleEndian.AppendUint16(b, z.dosTime)
	b = binary.LittleEndian.AppendUint16(b, z.dosDate)
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC-32, in the data descriptor
	b = binary.LittleEndian.AppendUint32(b, 0) // compressed size, likewise
	b = binary.LittleEndian.AppendUint32(b, 0) // uncompressed size, likewise
	b = binary.LittleEndian.AppendUint16(b, uint16(len(name)))
	b = binary.LittleEndian.AppendUint16(b, 9) // extra: extended timestamp
	b = append(b, name...)
	b = z.extra(b)
	z.buf = b
	if _, err := z.Write(b); err != nil {
		return nil, fmt.Errorf("cannot write zip header of %s: %w", name, err)
	}
	f.dataStart = z.written
	z.comp.Reset(z)
	z.cur = f
	return f, nil
}

// Write compresses p into the file.
func (f *zipFile) Write(p []byte) (int, error) {
	if f.z.cur != f {
		return 0, errors.New("write to a finished zip file")
	}
	f.crc.Write(p)
	f.size += uint64(len(p))
	return f.z.comp.Write(p)
}

// finish ends the file being written, if any: the rest of its compressed
// data, its data descriptor, and its central-directory record.
func (z *zipStream) finish() error {
	f := z.cur
	if f == nil {
		return nil
	}
	z.cur = nil
	if err := z.comp.Close(); err != nil {
		return fmt.Errorf("cannot compress %s: %w", f.name, err)
	}
	compressed := z.written - f.dataStart
	sum := f.crc.Sum32()
	big := compressed >= zipMax32 || f.size >= zipMax32

	b := z.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, zipDescSig)
	b = binary.LittleEndian.AppendUint32(b, sum)
	if big {
		b = binary.LittleEndian.AppendUint64(b, compressed)
		b = binary.LittleEndian.AppendUint64(b, f.size)
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(compressed))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.size))
	}
	if _, err := z.Write(b); err != nil {
		z.buf = b
		return fmt.Errorf("cannot write zip data descriptor of %s: %w", f.name, err)
	}

	zip64 := big || f.offset >= zipMax32
	version, extraLen := uint16(zipVersion20), 9
	if zip64 {
		version, extraLen = zipVersion45, 9+28
	}
	b = b[:0]
	b = binary.LittleEndian.AppendUint32(b, zipCentralSig)
	b = binary.LittleEndian.AppendUint16(b, zipVersion20) // made by: MS-DOS, 2.0, as archive/zip
	b = binary.LittleEndian.AppendUint16(b, version)
	b = binary.LittleEndian.AppendUint16(b, zipFlagDesc)
	b = binary.LittleEndian.AppendUint16(b, zipDeflate)
	b = binary.LittleEndian.AppendUint16(b, z.dosTime)
	b = binary.LittleEndian.AppendUint16(b, z.dosDate)
	b = binary.LittleEndian.AppendUint32(b, sum)
	if zip64 {
		b = binary.LittleEndian.AppendUint32(b, zipMax32)
		b = binary.LittleEndian.AppendUint32(b, zipMax32)
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(compressed))
		b = binary.LittleEndian.AppendUint32(b, uint32(f.size))
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(f.name)))
	b = binary.LittleEndian.AppendUint16(b, uint16(extraLen))
	b = binary.LittleEndian.AppendUint16(b, 0) // comment length
	b = binary.LittleEndian.AppendUint16(b, 0) // disk number start
	b = binary.LittleEndian.AppendUint16(b, 0) // internal attributes
	b = binary.LittleEndian.AppendUint32(b, 0) // external attributes
	b = binary.LittleEndian.AppendUint32(b, uint32(min(f.offset, zipMax32)))
	b = append(b, f.name...)
	b = z.extra(b)
	if zip64 {
		b = binary.LittleEndian.AppendUint16(b, zip64ExtraID)
		b = binary.LittleEndian.AppendUint16(b, 24)
		b = binary.LittleEndian.AppendUint64(b, f.size)
		b = binary.LittleEndian.AppendUint64(b, compressed)
		b = binary.LittleEndian.AppendUint64(b, f.offset)
	}
	z.buf = b
	if _, err := z.dirBuf.Write(b); err != nil {
		return fmt.Errorf("cannot spool zip directory entry of %s: %w", f.name, err)
	}
	z.dirBytes += uint64(len(b))
	z.files++
	return nil
}

// close finishes the last file, writes the central directory and the end
// records, and flushes the output. It does not close the output.
func (z *zipStream) close() error {
	if z.closed {
		return errors.New("zip archive already closed")
	}
	if err := z.finish(); err != nil {
		return err
	}
	z.closed = true
	if err := z.dirBuf.Flush(); err != nil {
		return fmt.Errorf("cannot spool zip directory: %w", err)
	}
	if _, err := z.dir.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("cannot read back zip directory: %w", err)
	}
	start := z.written
	n, err := io.Copy(z, z.dir)
	if err != nil {
		return fmt.Errorf("cannot write zip directory: %w", err)
	}
	if uint64(n) != z.dirBytes {
		return fmt.Errorf("zip directory spool holds %d bytes, want %d", n, z.dirBytes)
	}
	end := z.written
	records, size, offset := z.files, end-start, start

	b := z.buf[:0]
	if records >= zipMax16 || size >= zipMax32 || offset >= zipMax32 {
		b = binary.LittleEndian.AppendUint32(b, zip64EndSig)
		b = binary.LittleEndian.AppendUint64(b, zip64EndLen-12)
		b = binary.LittleEndian.AppendUint16(b, zipVersion45) // made by
		b = binary.LittleEndian.AppendUint16(b, zipVersion45) // needed
		b = binary.LittleEndian.AppendUint32(b, 0)            // this disk
		b = binary.LittleEndian.AppendUint32(b, 0)            // disk of the directory
		b = binary.LittleEndian.AppendUint64(b, records)      // on this disk
		b = binary.LittleEndian.AppendUint64(b, records)      // in all
		b = binary.LittleEndian.AppendUint64(b, size)
		b = binary.LittleEndian.AppendUint64(b, offset)
		b = binary.LittleEndian.AppendUint32(b, zip64LocSig)
		b = binary.LittleEndian.AppendUint32(b, 0)   // disk of the zip64 end record
		b = binary.LittleEndian.AppendUint64(b, end) // offset of the zip64 end record
		b = binary.LittleEndian.AppendUint32(b, 1)   // disks
		records, size, offset = zipMax16, zipMax32, zipMax32
	}
	b = binary.LittleEndian.AppendUint32(b, zipEndSig)
	b = binary.LittleEndian.AppendUint16(b, 0) // this disk
	b = binary.LittleEndian.AppendUint16(b, 0) // disk of the directory
	b = binary.LittleEndian.AppendUint16(b, uint16(records))
	b = binary.LittleEndian.AppendUint16(b, uint16(records))
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	b = binary.LittleEndian.AppendUint32(b, uint32(offset))
	b = binary.LittleEndian.AppendUint16(b, 0) // comment length
	z.buf = b
	if _, err := z.Write(b); err != nil {
		return fmt.Errorf("cannot write zip end record: %w", err)
	}
	if err := z.out.Flush(); err != nil {
		return fmt.Errorf("cannot write zip archive: %w", err)
	}
	return nil
}

// discard releases the temporary file. It is safe after close and after
// an error.
func (z *zipStream) discard() {
	name := z.dir.Name()
	z.dir.Close()
	_ = os.Remove(name)
}
