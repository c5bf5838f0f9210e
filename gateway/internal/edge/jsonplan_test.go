package edge

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/pizzashop/pizzashop/proto/pizzashop/common/v1"
	deliveryv1 "github.com/pizzashop/pizzashop/proto/pizzashop/delivery/v1"
	kitchenv1 "github.com/pizzashop/pizzashop/proto/pizzashop/kitchen/v1"
	menuv1 "github.com/pizzashop/pizzashop/proto/pizzashop/menu/v1"
	orderv1 "github.com/pizzashop/pizzashop/proto/pizzashop/order/v1"
)

// The API's message types, linked in so that the registry holds them.
var _ = []proto.Message{
	(*commonv1.Money)(nil), (*deliveryv1.Delivery)(nil), (*kitchenv1.Ticket)(nil),
	(*menuv1.Menu)(nil), (*orderv1.Order)(nil),
}

// texts are strings that exercise every escaping rule.
var texts = []string{
	"", "plain", "<b>extra cheese</b> & \"crispy\" \\ café",
	"line\u2028sep\u2029 tab\t nl\n cr\r bs\b ff\f nul\x00 us\x1f del\x7f 🍕",
	"\ufffd replacement", "\u2027\u202a near the separators", "Zoë <script>",
}

// fill sets every field of m to a value picked by r, some of them left
// unset, nested messages up to depth.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if r.IntN(4) == 0 || fd.IsMap() {
			continue // unpopulated
		}
		if oo := fd.ContainingOneof(); oo != nil && m.WhichOneof(oo) != nil && r.IntN(2) == 0 {
			continue
		}
		if fd.IsList() {
			l := m.Mutable(fd).List()
			for range r.IntN(3) {
				if fd.Kind() == protoreflect.MessageKind {
					if depth == 0 {
						break
					}
					e := l.NewElement()
					fill(r, e.Message(), depth-1)
					l.Append(e)
					continue
				}
				l.Append(scalar(r, fd))
			}
			continue
		}
		if fd.Kind() == protoreflect.MessageKind {
			if depth == 0 {
				continue
			}
			fill(r, m.Mutable(fd).Message(), depth-1)
			continue
		}
		m.Set(fd, scalar(r, fd))
	}
}

func scalar(r *rand.Rand, fd protoreflect.FieldDescriptor) protoreflect.Value {
	ints := []int64{0, 1, -1, 42, math.MaxInt32, math.MinInt32, 1 << 40, math.MaxInt64, math.MinInt64}
	floats := []float64{0, 1.5, -2.25, 1e-7, 1e21, 123456789.125, math.NaN(), math.Inf(1), math.Inf(-1), 3.4e38}
	n := ints[r.IntN(len(ints))]
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(texts[r.IntN(len(texts))])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(texts[r.IntN(len(texts))]))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(n)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(floats[r.IntN(len(floats))]))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(floats[r.IntN(len(floats))])
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if r.IntN(5) == 0 {
			return protoreflect.ValueOfEnum(1000) // a number the enum does not name
		}
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	}
	panic("no scalar for " + fd.FullName())
}

// fixTimes puts valid timestamps and durations, with 0, 3, 6 and 9
// fractional digits, in every Timestamp and Duration field that is set.
func fixTimes(r *rand.Rand, m protoreflect.Message) {
	nanos := []int64{0, 123000000, 123456000, 123456789, 100, 999999999}
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp":
		secs := []int64{r.Int64N(4e9) - 1e9, -62135596800, 253402300799, 0, 951782400} // the range's ends, the epoch, a leap day
		proto.Merge(m.Interface(), &timestamppb.Timestamp{Seconds: secs[r.IntN(len(secs))], Nanos: int32(nanos[r.IntN(len(nanos))])})
		return
	case "google.protobuf.Duration":
		d := &durationpb.Duration{Seconds: r.Int64N(1e6), Nanos: int32(nanos[r.IntN(len(nanos))])}
		if r.IntN(2) == 0 {
			d.Seconds, d.Nanos = -d.Seconds, -d.Nanos
		}
		proto.Reset(m.Interface())
		proto.Merge(m.Interface(), d)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := range v.List().Len() {
				fixTimes(r, v.List().Get(i).Message())
			}
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.MessageKind:
			fixTimes(r, v.Message())
		}
		return true
	})
}

// TestPlanSameBytes checks jsonMarshaler against runtime.JSONPb, byte for
// byte, on every message type of the API filled at random: responses and
// stream lines.
func TestPlanSameBytes(t *testing.T) {
	m := newJSONMarshaler()
	ref := &runtime.JSONPb{MarshalOptions: m.MarshalOptions, UnmarshalOptions: m.UnmarshalOptions}
	r := rand.New(rand.NewPCG(1, 2))
	types := 0
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		if !strings.HasPrefix(string(mt.Descriptor().FullName()), "pizzashop.") {
			return true
		}
		types++
		for range 40 {
			msg := mt.New()
			fill(r, msg, 3)
			fixTimes(r, msg)
			for name, v := range map[string]any{
				"response":    msg.Interface(),
				"stream line": map[string]any{"result": msg.Interface()},
			} {
				got, gerr := m.Marshal(v)
				want, werr := ref.Marshal(v)
				if (gerr != nil) != (werr != nil) || !bytes.Equal(got, want) {
					t.Fatalf("%s of %s: Marshal = %s, %v\nwant %s, %v", name, mt.Descriptor().FullName(), got, gerr, want, werr)
				}
			}
		}
		return true
	})
	if types < 20 {
		t.Fatalf("checked %d message types, want the whole API", types)
	}
}

// TestPlanFallsBack checks what the plans leave to protojson: messages they
// do not cover, and values protojson refuses, with its own error.
func TestPlanFallsBack(t *testing.T) {
	m := newJSONMarshaler()
	ref := &runtime.JSONPb{MarshalOptions: m.MarshalOptions, UnmarshalOptions: m.UnmarshalOptions}
	bad := queuedTicket()
	bad.Ticket.Note = "bad \xff utf-8"
	outOfRange := queuedTicket()
	outOfRange.Ticket.OrderTime = &timestamppb.Timestamp{Seconds: math.MaxInt64}
	st, _ := structpb.NewStruct(map[string]any{"b": 1, "a": []any{"x", nil}})
	for name, v := range map[string]proto.Message{
		"invalid UTF-8":          bad,
		"timestamp out of range": outOfRange,
		"struct":                 st,
		"duration":               durationpb.New(-1500),
	} {
		got, gerr := m.Marshal(v)
		want, werr := ref.Marshal(v)
		if (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) || !bytes.Equal(got, want) {
			t.Errorf("%s: Marshal = %s, %v; want %s, %v", name, got, gerr, want, werr)
		}
	}
}

// TestPlanConcurrent marshals from many goroutines at once, plans being
// built and used meanwhile (run with -race).
func TestPlanConcurrent(t *testing.T) {
	m := newJSONMarshaler()
	want, err := m.MarshalOptions.Marshal(placedOrder())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := m.Marshal(placedOrder())
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("Marshal = %s, %v; want %s", got, err, want)
					return
				}
				if _, err := m.Marshal(map[string]any{"result": proto.Message(queuedTicket())}); err != nil {
					t.Errorf("stream line: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}
