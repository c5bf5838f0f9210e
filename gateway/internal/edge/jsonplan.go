package edge

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The gateway answers every call and every line of a live stream with
// protojson (EmitUnpopulated). protojson walks each message through sorted
// field rangers and formats timestamps with fmt; on an order that is most of
// the gateway's JSON cost. A jsonPlan is the same walk worked out once per
// message type: the fields in protojson's order with their names already
// quoted, so that encoding is a loop of appends. It writes what protojson
// writes, byte for byte; a message it does not cover (maps, Any, Struct and
// the other well-known types besides Timestamp and Duration, extensions,
// proto2 required fields) and any message it cannot encode (invalid UTF-8, a
// timestamp out of range) go to protojson, which gives its own answer or
// error.

// errNoPlan sends a message back to protojson.
var errNoPlan = errors.New("edge: message not covered by a JSON plan")

// commaSpace is whether protojson writes a space after each comma in
// single-line output. It picks that once per binary (so that callers do not
// depend on its exact bytes), so it is read back from protojson itself, on
// a message that always has commas.
var commaSpace = func() bool {
	b, _ := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(&statuspb.Status{})
	return bytes.Contains(b, []byte(", "))
}()

type fieldKind uint8

const (
	kindBool fieldKind = iota
	kindString
	kindInt32
	kindUint32
	kindInt64 // every 64-bit integer kind: written as a JSON string
	kindFloat
	kindDouble
	kindBytes
	kindEnum
	kindNullEnum // google.protobuf.NullValue
	kindMessage
)

// fieldPlan is one field of a jsonPlan.
type fieldPlan struct {
	fd       protoreflect.FieldDescriptor
	name     []byte // "jsonName":
	kind     fieldKind
	list     bool
	oneof    bool // left out unless set
	presence bool // null unless set
	enum     protoreflect.EnumValueDescriptors
	msg      *jsonPlan
}

type wellKnown uint8

const (
	plainMessage wellKnown = iota
	timestampMessage
	durationMessage
)

// jsonPlan is how one message type is encoded.
type jsonPlan struct {
	wkt    wellKnown
	fields []fieldPlan
	// size is the length of the last encoding of this type at the top
	// level, to size the next one's buffer in one allocation.
	size atomic.Int64
}

var (
	plansMu sync.Mutex
	plans   sync.Map // protoreflect.MessageDescriptor -> *jsonPlan, nil when not covered
)

// planFor returns md's plan, or nil when protojson must encode md.
func planFor(md protoreflect.MessageDescriptor) *jsonPlan {
	if p, ok := plans.Load(md); ok {
		return p.(*jsonPlan)
	}
	plansMu.Lock()
	defer plansMu.Unlock()
	if p, ok := plans.Load(md); ok {
		return p.(*jsonPlan)
	}
	building := map[protoreflect.MessageDescriptor]*jsonPlan{}
	p, ok := buildPlan(md, building)
	if !ok {
		p = nil
	}
	// The types md contains are complete only when md is: a failed build
	// can leave a plan that refers to one half made.
	if ok {
		for d, np := range building {
			if d != md {
				plans.LoadOrStore(d, np)
			}
		}
	}
	plans.Store(md, p)
	return p
}

// buildPlan works out md's plan; ok is false when md, or a message it
// contains, is not covered.
func buildPlan(md protoreflect.MessageDescriptor, building map[protoreflect.MessageDescriptor]*jsonPlan) (p *jsonPlan, ok bool) {
	if p, seen := building[md]; seen {
		return p, true // recursion: the plan is being filled in above
	}
	if p, done := plans.Load(md); done {
		p := p.(*jsonPlan)
		return p, p != nil
	}
	p = &jsonPlan{}
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		p.wkt = timestampMessage
		building[md] = p
		return p, true
	case "google.protobuf.Duration":
		p.wkt = durationMessage
		building[md] = p
		return p, true
	}
	if md.FullName().Parent() == "google.protobuf" || md.IsMapEntry() || md.ExtensionRanges().Len() > 0 {
		return nil, false
	}
	building[md] = p
	fds := md.Fields()
	p.fields = make([]fieldPlan, 0, fds.Len())
	for i := range fds.Len() {
		fd := fds.Get(i)
		if fd.IsMap() || fd.Cardinality() == protoreflect.Required {
			return nil, false
		}
		f := fieldPlan{
			fd:       fd,
			name:     append(appendJSONString(nil, fd.JSONName(), false), ':'),
			list:     fd.IsList(),
			oneof:    fd.ContainingOneof() != nil,
			presence: fd.HasPresence(),
		}
		switch fd.Kind() {
		case protoreflect.BoolKind:
			f.kind = kindBool
		case protoreflect.StringKind:
			f.kind = kindString
		case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
			f.kind = kindInt32
		case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
			f.kind = kindUint32
		case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind,
			protoreflect.Sfixed64Kind, protoreflect.Fixed64Kind:
			f.kind = kindInt64
		case protoreflect.FloatKind:
			f.kind = kindFloat
		case protoreflect.DoubleKind:
			f.kind = kindDouble
		case protoreflect.BytesKind:
			f.kind = kindBytes
		case protoreflect.EnumKind:
			f.kind = kindEnum
			if fd.Enum().FullName() == "google.protobuf.NullValue" {
				f.kind = kindNullEnum
			}
			f.enum = fd.Enum().Values()
		case protoreflect.MessageKind:
			f.kind = kindMessage
			sub, ok := buildPlan(fd.Message(), building)
			if !ok {
				return nil, false
			}
			f.msg = sub
		default: // groups
			return nil, false
		}
		p.fields = append(p.fields, f)
	}
	return p, true
}

// jsonStyle is how the bytes are laid out: space after commas as
// protojson does in this binary, and HTML-sensitive characters in strings
// escaped as encoding/json escapes them in a stream line.
type jsonStyle struct {
	commaSpace bool
	html       bool
}

// marshal encodes m as protojson would, or returns errNoPlan.
func (p *jsonPlan) marshal(m protoreflect.Message, st jsonStyle) ([]byte, error) {
	b := make([]byte, 0, p.size.Load()+64)
	b, err := p.append(b, m, st)
	if err != nil {
		return nil, err
	}
	p.size.Store(int64(len(b)))
	return b, nil
}

// append appends m, which must be of p's type, to b.
func (p *jsonPlan) append(b []byte, m protoreflect.Message, st jsonStyle) ([]byte, error) {
	switch p.wkt {
	case timestampMessage:
		return appendTimestamp(b, m)
	case durationMessage:
		return appendDuration(b, m)
	}
	b = append(b, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		var v protoreflect.Value
		switch {
		case f.oneof:
			if !m.Has(f.fd) {
				continue
			}
			v = m.Get(f.fd)
		case f.presence && !m.Has(f.fd):
			// invalid Value: null
		default:
			v = m.Get(f.fd)
		}
		if !first {
			b = appendComma(b, st)
		}
		first = false
		b = append(b, f.name...)
		var err error
		if f.list {
			b, err = f.appendList(b, v.List(), st)
		} else {
			b, err = f.appendValue(b, v, st)
		}
		if err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendComma(b []byte, st jsonStyle) []byte {
	if st.commaSpace {
		return append(b, ',', ' ')
	}
	return append(b, ',')
}

func (f *fieldPlan) appendList(b []byte, l protoreflect.List, st jsonStyle) ([]byte, error) {
	b = append(b, '[')
	for i := range l.Len() {
		if i > 0 {
			b = appendComma(b, st)
		}
		var err error
		if b, err = f.appendValue(b, l.Get(i), st); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

func (f *fieldPlan) appendValue(b []byte, v protoreflect.Value, st jsonStyle) ([]byte, error) {
	if !v.IsValid() {
		return append(b, "null"...), nil
	}
	switch f.kind {
	case kindBool:
		return strconv.AppendBool(b, v.Bool()), nil
	case kindString:
		return appendJSONStringChecked(b, v.String(), st.html)
	case kindInt32:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case kindUint32:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case kindInt64:
		b = append(b, '"')
		if f.fd.Kind() == protoreflect.Uint64Kind || f.fd.Kind() == protoreflect.Fixed64Kind {
			b = strconv.AppendUint(b, v.Uint(), 10)
		} else {
			b = strconv.AppendInt(b, v.Int(), 10)
		}
		return append(b, '"'), nil
	case kindFloat:
		return appendJSONFloat(b, v.Float(), 32), nil
	case kindDouble:
		return appendJSONFloat(b, v.Float(), 64), nil
	case kindBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		return append(b, '"'), nil
	case kindNullEnum:
		return append(b, "null"...), nil
	case kindEnum:
		if ev := f.enum.ByNumber(v.Enum()); ev != nil {
			return appendJSONString(b, string(ev.Name()), st.html), nil
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case kindMessage:
		return f.msg.append(b, v.Message(), st)
	}
	return nil, errNoPlan
}

// appendJSONFloat writes n as protojson does: NaN and the infinities as
// strings, exponents only for very small or large magnitudes.
func appendJSONFloat(b []byte, n float64, bitSize int) []byte {
	switch {
	case math.IsNaN(n):
		return append(b, `"NaN"`...)
	case math.IsInf(n, +1):
		return append(b, `"Infinity"`...)
	case math.IsInf(n, -1):
		return append(b, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(n); abs != 0 {
		if bitSize == 64 && (abs < 1e-6 || abs >= 1e21) ||
			bitSize == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, n, format, -1, bitSize)
	if format == 'e' { // e-07 -> e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
	maxDurationSeconds  = 315576000000
	maxNanos            = 999999999
)

// appendTimestamp writes an RFC 3339 UTC time with 0, 3, 6 or 9 fractional
// digits, as protojson does.
func appendTimestamp(b []byte, m protoreflect.Message) ([]byte, error) {
	var secs, nanos int64
	if ts, ok := m.Interface().(*timestamppb.Timestamp); ok {
		secs, nanos = ts.GetSeconds(), int64(ts.GetNanos())
	} else {
		fds := m.Descriptor().Fields()
		secs, nanos = m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	}
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos > maxNanos {
		return nil, errNoPlan // protojson reports the range error
	}
	t := time.Unix(secs, nanos).UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	if nanos != 0 {
		b = append(b, '.')
		b = appendDigits(b, int(nanos), 9)
		b = trimFraction(b)
	}
	return append(b, 'Z', '"'), nil
}

// appendDigits appends n, which is not negative, in at least width
// digits.
func appendDigits(b []byte, n, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for n >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
		width--
	}
	i--
	buf[i] = byte('0' + n)
	return append(b, buf[i:]...)
}

// appendDuration writes seconds with 0, 3, 6 or 9 fractional digits and an
// "s", as protojson does.
func appendDuration(b []byte, m protoreflect.Message) ([]byte, error) {
	fds := m.Descriptor().Fields()
	secs, nanos := m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int()
	if secs < -maxDurationSeconds || secs > maxDurationSeconds ||
		nanos < -maxNanos || nanos > maxNanos ||
		(secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) {
		return nil, errNoPlan
	}
	b = append(b, '"')
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
		secs, nanos = -secs, -nanos
	}
	b = strconv.AppendInt(b, secs, 10)
	b = append(b, '.')
	b = appendDigits(b, int(nanos), 9)
	b = trimFraction(b)
	return append(b, 's', '"'), nil
}

// trimFraction drops trailing groups of three zeros from a nine-digit
// fraction at the end of b, and the dot when nothing is left.
func trimFraction(b []byte) []byte {
	for range 2 {
		if bytes.HasSuffix(b, []byte("000")) {
			b = b[:len(b)-3]
		}
	}
	if bytes.HasSuffix(b, []byte(".000")) {
		b = b[:len(b)-4]
	}
	return b
}

// errInvalidUTF8 sends a string protojson refuses back to protojson, for
// its error.
var errInvalidUTF8 = errors.New("edge: invalid UTF-8")

func appendJSONStringChecked(b []byte, s string, html bool) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, errInvalidUTF8
	}
	return appendJSONString(b, s, html), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes valid UTF-8 s as protojson does: \" \\ \b \f \n
// \r \t and \u00XX for the other control characters, everything else as
// is. With html, <, >, &, U+2028 and U+2029 are written \u003c, \u003e,
// \u0026, \u2028 and \u2029, as encoding/json's HTMLEscape does.
func appendJSONString(b []byte, s string, html bool) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			if html && c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && s[i+2]&^1 == 0xA8 {
				b = append(b, s[start:i]...)
				b = append(b, `\u202`...)
				b = append(b, hexDigits[s[i+2]&0xF])
				i += 3
				start = i
				continue
			}
			i++
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' && (!html || (c != '<' && c != '>' && c != '&')) {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
