package server

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// codecs are connect's protobuf and JSON codecs with decode errors
// written for a person: connect's own say "unmarshal into
// *diaryv1.PushRequest: proto: string field contains invalid UTF-8", which
// names a Go type and not the field. These name the message and the field.
func codecs() []connect.HandlerOption {
	json := func(name string) connect.HandlerOption {
		return connect.WithCodec(&clearCodec{name: name,
			marshal: func(dst []byte, m proto.Message) ([]byte, error) {
				return protojson.MarshalOptions{}.MarshalAppend(dst, m)
			},
			unmarshal: func(b []byte, m proto.Message) error {
				return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(b, m)
			},
		})
	}
	return []connect.HandlerOption{
		connect.WithCodec(&clearCodec{name: "proto", binary: true,
			marshal:   func(dst []byte, m proto.Message) ([]byte, error) { return proto.MarshalOptions{}.MarshalAppend(dst, m) },
			unmarshal: func(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) },
		}),
		json("json"),
		json("json; charset=utf-8"),
	}
}

type clearCodec struct {
	name      string
	binary    bool
	marshal   func([]byte, proto.Message) ([]byte, error)
	unmarshal func([]byte, proto.Message) error
}

func (c *clearCodec) Name() string { return c.name }

func (c *clearCodec) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

// MarshalAppend lets connect marshal into its pooled buffers.
func (c *clearCodec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("cannot marshal %T: not a protobuf message", m)
	}
	return c.marshal(dst, pm)
}

func (c *clearCodec) Unmarshal(b []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("cannot unmarshal into %T: not a protobuf message", m)
	}
	if !c.binary && len(b) == 0 {
		return fmt.Errorf("the request is empty, not a JSON %s", pm.ProtoReflect().Descriptor().FullName())
	}
	err := c.unmarshal(b, pm)
	if err == nil {
		return nil
	}
	md := pm.ProtoReflect().Descriptor()
	if c.binary {
		if path := invalidUTF8(b, md); path != "" {
			return fmt.Errorf("the request's %s field is not valid UTF-8 text", path)
		}
		return fmt.Errorf("the request is not a valid %s message: %s", md.FullName(), protoCause(err))
	}
	return fmt.Errorf("the request is not valid JSON for %s: %s", md.FullName(), protoCause(err))
}

// protoCause strips the "proto:" prefix (which the protobuf module spells
// with a space or a no-break space at random) from a protobuf error.
func protoCause(err error) string {
	s := err.Error()
	for _, p := range []string{"proto: ", "proto:\u00a0"} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// invalidUTF8 returns the path ("changes.text") of the first string field
// of the encoded message b, of type md, that is not valid UTF-8, or "".
func invalidUTF8(b []byte, md protoreflect.MessageDescriptor) string {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ""
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return ""
		}
		if fd := md.Fields().ByNumber(num); fd != nil && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b[:n])
			switch {
			case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
				return string(fd.Name())
			case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
				if p := invalidUTF8(v, fd.Message()); p != "" {
					return string(fd.Name()) + "." + p
				}
			}
		}
		b = b[n:]
	}
	return ""
}
