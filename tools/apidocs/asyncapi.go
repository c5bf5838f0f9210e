package main

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Headers every event carries (pkg/natsx.Bus.PublishRaw and the W3C trace
// context propagator). Dead letters add the dlHeaders.
var eventHeaders = []struct {
	name, description string
	required          bool
}{
	{"Nats-Msg-Id", "The event's unique id (its event_id field). JetStream drops a repeated publish of the same id within the stream's " + dupWindow + " duplicate window, so a relay that retries never publishes an event twice.", true},
	{"Pizzashop-Event-Type", "The full protobuf name of the payload's message.", true},
	{"Content-Type", "`application/protobuf; proto=<message>`: the payload is that message in the protobuf binary encoding.", true},
	{"traceparent", "W3C trace context of the request that caused the event, so consumers continue its trace. Absent when nothing was being traced.", false},
	{"tracestate", "W3C trace state, when the trace has any.", false},
}

var dlHeaders = []struct{ name, description string }{
	{"Pizzashop-Dl-Stream", "The stream the message was consumed from."},
	{"Pizzashop-Dl-Subject", "Its original subject; a replay publishes it there again."},
	{"Pizzashop-Dl-Sequence", "Its sequence number in that stream."},
	{"Pizzashop-Dl-Consumer", "The durable consumer that gave up on it."},
	{"Pizzashop-Dl-Deliveries", "How many times it was delivered."},
	{"Pizzashop-Dl-Error", "The last error, at most 1024 bytes."},
	{"Pizzashop-Dl-Msg-Id", "Its original Nats-Msg-Id (the dead letter has its own)."},
}

// asyncAPIDoc fixes the order of the document's top-level keys.
type asyncAPIDoc struct {
	AsyncAPI           string         `json:"asyncapi"`
	ID                 string         `json:"id"`
	Info               map[string]any `json:"info"`
	DefaultContentType string         `json:"defaultContentType"`
	Servers            map[string]any `json:"servers"`
	Channels           map[string]any `json:"channels"`
	Operations         map[string]any `json:"operations"`
	Components         map[string]any `json:"components"`
}

// buildAsyncAPI describes every stream, subject, event, header and consumer
// of cat, with payload schemas from the protos in files.
func buildAsyncAPI(files *protoregistry.Files, cat catalog) (*asyncAPIDoc, error) {
	doc := &asyncAPIDoc{
		AsyncAPI: "3.1.0",
		ID:       "urn:pizzashop:events",
		Info: map[string]any{
			"title":   "Pizzashop events",
			"version": "1.0",
			"description": "Every state change in the shop is a versioned protobuf event published on NATS JetStream by the service that owns the data, " +
				"through a transactional outbox: the event is stored with the change and a relay publishes it until JetStream acknowledges it, so none is lost. " +
				"Subjects are `<domain>.<status>.<order id>`. Payloads are binary protobuf; the schemas here are their JSON form (protojson), which `pizzashop events tail` and `pizzashop events get` print. " +
				fmt.Sprintf("Consumers are durable, acknowledge after their own write and are idempotent; a message that fails %d deliveries is parked on DEADLETTER.", maxDeliver),
			"license": map[string]any{"name": "Apache-2.0"},
		},
		DefaultContentType: "application/protobuf",
		Servers: map[string]any{"local": map[string]any{
			"host":        "127.0.0.1:4222",
			"protocol":    "nats",
			"description": "The embedded NATS JetStream of `make run` (NATS_URL points the services and the pizzashop command elsewhere).",
		}},
		Channels:   map[string]any{},
		Operations: map[string]any{},
	}
	schemas := newSchemaSet("#/components/schemas/")
	messages := map[string]any{}
	channelOf := map[string]string{} // stream name -> channel id
	var eventMessages []string       // component message ids of the events
	var problems []error

	for _, st := range cat.Streams {
		if st.Message == "" {
			continue
		}
		d, err := files.FindDescriptorByName(protoreflect.FullName(st.Message))
		md, ok := d.(protoreflect.MessageDescriptor)
		if err != nil || !ok {
			problems = append(problems, fmt.Errorf("stream %s: message %s is not in the protos", st.Name, st.Message))
			continue
		}
		msgID := string(md.Name())
		messages[msgID] = eventMessage(md, schemas)
		eventMessages = append(eventMessages, msgID)

		params := map[string]any{}
		if st.StatusEnum != "" {
			values, err := statusWords(files, st.StatusEnum)
			if err != nil {
				problems = append(problems, fmt.Errorf("stream %s: %w", st.Name, err))
				continue
			}
			params["status"] = map[string]any{
				"description": "The status moved to, in lower case: the " + st.StatusEnum + " value without its prefix.",
				"enum":        values,
			}
		}
		if st.IDParam != "" {
			params["orderId"] = map[string]any{"description": st.IDParam}
		}
		ch := map[string]any{
			"address":  st.Address,
			"title":    st.Name + " stream: " + st.Address,
			"summary":  st.Purpose,
			"messages": map[string]any{msgID: map[string]any{"$ref": "#/components/messages/" + msgID}},
			"description": fmt.Sprintf("Stream %s keeps subjects %s (file storage, %s, %s duplicate window). Published by the %s service.",
				st.Name, st.Subjects, retention, dupWindow, st.Owner),
		}
		if len(params) > 0 {
			ch["parameters"] = params
		}
		doc.Channels[st.Channel] = ch
		channelOf[st.Name] = st.Channel
		doc.Operations["publish"+upperFirst(msgID)] = map[string]any{
			"action":  "send",
			"channel": map[string]any{"$ref": "#/channels/" + st.Channel},
			"title":   "The " + st.Owner + " service publishes " + msgID,
			"summary": fmt.Sprintf("Published on %s through the %s service's outbox, once per change.", st.Address, st.Owner),
			"messages": []any{map[string]any{
				"$ref": "#/channels/" + st.Channel + "/messages/" + msgID,
			}},
		}
	}

	// Dead letters: any consumer's event, with the dl headers added.
	var durables []any
	for _, c := range cat.Consumers {
		durables = append(durables, c.Durable)
	}
	for _, st := range cat.Streams {
		if st.Message != "" {
			continue
		}
		var payloads []any
		for _, id := range eventMessages {
			payloads = append(payloads, messages[id].(map[string]any)["payload"])
		}
		messages["DeadLetter"] = deadLetterMessage(payloads)
		doc.Channels[st.Channel] = map[string]any{
			"address":     st.Address,
			"title":       st.Name + " stream: " + st.Address,
			"summary":     st.Purpose,
			"description": fmt.Sprintf("Stream %s keeps subjects %s (file storage, %s). Written by %s.", st.Name, st.Subjects, retention, st.Owner),
			"parameters": map[string]any{"consumer": map[string]any{
				"description": "The durable consumer that gave up on the message.",
				"enum":        durables,
			}},
			"messages": map[string]any{"DeadLetter": map[string]any{"$ref": "#/components/messages/DeadLetter"}},
		}
		channelOf[st.Name] = st.Channel
		doc.Operations["parkDeadLetter"] = map[string]any{
			"action":  "send",
			"channel": map[string]any{"$ref": "#/channels/" + st.Channel},
			"title":   "A consumer parks a message it gave up on",
			"summary": fmt.Sprintf("After %d failed deliveries, or at once for a message that cannot be decoded, the consumer copies it here and acknowledges the original.", maxDeliver),
			"messages": []any{map[string]any{
				"$ref": "#/channels/" + st.Channel + "/messages/DeadLetter",
			}},
		}
		doc.Operations["replayDeadLetters"] = map[string]any{
			"action":  "receive",
			"channel": map[string]any{"$ref": "#/channels/" + st.Channel},
			"title":   "An operator lists and replays dead letters",
			"summary": "`pizzashop deadletters list` reads them; `pizzashop deadletters replay SEQ... | --all` publishes each again on its original subject under a new message id and removes it here.",
			"messages": []any{map[string]any{
				"$ref": "#/channels/" + st.Channel + "/messages/DeadLetter",
			}},
		}
	}

	for _, c := range cat.Consumers {
		ch, ok := channelOf[c.Stream]
		if !ok {
			problems = append(problems, fmt.Errorf("consumer %s: no stream %s in the catalogue", c.Durable, c.Stream))
			continue
		}
		msgID := messageOfChannel(doc, ch)
		doc.Operations["consume"+camel(c.Durable)] = map[string]any{
			"action":  "receive",
			"channel": map[string]any{"$ref": "#/channels/" + ch},
			"title":   fmt.Sprintf("%s service: durable consumer %s", c.Service, c.Durable),
			"summary": c.Does,
			"description": fmt.Sprintf("Durable consumer `%s` on stream %s, filter `%s`, explicit acks after the service's own write. "+
				"A failing message is redelivered with backoff (0.5s, 1s, 2s, 5s) up to %d deliveries, then parked on DEADLETTER as deadletter.%s; "+
				"while the store or another service is down, messages are held and retried in place instead.",
				c.Durable, c.Stream, c.Filter, maxDeliver, c.Durable),
			"messages": []any{map[string]any{"$ref": "#/channels/" + ch + "/messages/" + msgID}},
			"x-pizzashop-consumer": map[string]any{
				"durable": c.Durable, "stream": c.Stream, "filterSubjects": []any{c.Filter},
				"service": c.Service, "ackPolicy": "explicit", "maxDeliver": maxDeliver,
			},
		}
	}
	for _, s := range cat.Subscriptions {
		ch, ok := channelOf[s.Stream]
		if !ok {
			problems = append(problems, fmt.Errorf("subscription %s: no stream %s in the catalogue", s.Subject, s.Stream))
			continue
		}
		msgID := messageOfChannel(doc, ch)
		doc.Operations["follow"+upperFirst(s.Service)+"Changes"] = map[string]any{
			"action":  "receive",
			"channel": map[string]any{"$ref": "#/channels/" + ch},
			"title":   fmt.Sprintf("%s service: live subscription %s", s.Service, s.Subject),
			"summary": "Feeds " + s.Feeds,
			"description": "A plain (not durable) NATS subscription on `" + s.Subject + "` while a client is watching. " +
				"A watcher that reconnects starts again from a fresh snapshot, so nothing it missed is lost.",
			"messages": []any{map[string]any{"$ref": "#/channels/" + ch + "/messages/" + msgID}},
		}
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}
	doc.Components = map[string]any{"messages": messages, "schemas": schemas.schemas}
	return doc, nil
}

// eventMessage describes one event: its protobuf message, content type and
// headers.
func eventMessage(md protoreflect.MessageDescriptor, schemas *schemaSet) map[string]any {
	name := string(md.FullName())
	return map[string]any{
		"name":        string(md.Name()),
		"title":       name,
		"summary":     firstSentence(comment(md)),
		"description": comment(md),
		"contentType": "application/protobuf; proto=" + name,
		"headers":     headersSchema(name, nil),
		"payload":     schemas.add(md),
		"correlationId": map[string]any{
			"description": "The event id, also the Nats-Msg-Id header.",
			"location":    "$message.header#/Nats-Msg-Id",
		},
	}
}

// deadLetterMessage describes a parked message: the original payload and
// headers unchanged, plus where it came from and why it failed.
func deadLetterMessage(payloads []any) map[string]any {
	return map[string]any{
		"name":        "DeadLetter",
		"title":       "Dead letter",
		"summary":     "A message a consumer gave up on, unchanged, with headers saying where it came from and why it failed.",
		"description": "The payload and the headers are the original event's (its Content-Type and Pizzashop-Event-Type say which message it is); the Pizzashop-Dl-* headers are added.",
		"contentType": "application/protobuf",
		"headers":     headersSchema("", dlHeaders),
		"payload":     map[string]any{"oneOf": payloads},
	}
}

// headersSchema is the schema of an event's headers; eventType fixes the
// type headers when it is not empty.
func headersSchema(eventType string, extra []struct{ name, description string }) map[string]any {
	props := map[string]any{}
	var required []any
	for _, h := range eventHeaders {
		p := map[string]any{"type": "string", "description": h.description}
		switch {
		case h.name == "Pizzashop-Event-Type" && eventType != "":
			p["const"] = eventType
		case h.name == "Content-Type" && eventType != "":
			p["const"] = "application/protobuf; proto=" + eventType
		case h.name == "traceparent":
			p["pattern"] = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
		}
		props[h.name] = p
		if h.required {
			required = append(required, h.name)
		}
	}
	for _, h := range extra {
		props[h.name] = map[string]any{"type": "string", "description": h.description}
		required = append(required, h.name)
	}
	return map[string]any{"type": "object", "properties": props, "required": required}
}

// statusWords lists the subject words of an enum's values: the value name
// without the enum's prefix, in lower case (ORDER_STATUS_PLACED is
// "placed"), leaving out the zero value, which is never published.
func statusWords(files *protoregistry.Files, enum string) ([]any, error) {
	d, err := files.FindDescriptorByName(protoreflect.FullName(enum))
	ed, ok := d.(protoreflect.EnumDescriptor)
	if err != nil || !ok {
		return nil, fmt.Errorf("enum %s is not in the protos", enum)
	}
	var words []any
	values := ed.Values()
	for i := range values.Len() {
		v := values.Get(i)
		if v.Number() == 0 {
			continue
		}
		name := string(v.Name())
		prefix := upperSnake(string(ed.Name())) + "_"
		if !strings.HasPrefix(name, prefix) {
			return nil, fmt.Errorf("enum value %s does not start with %s", name, prefix)
		}
		words = append(words, strings.ToLower(strings.TrimPrefix(name, prefix)))
	}
	return words, nil
}

// messageOfChannel returns the id of the one message of channel ch.
func messageOfChannel(doc *asyncAPIDoc, ch string) string {
	msgs := doc.Channels[ch].(map[string]any)["messages"].(map[string]any)
	for id := range msgs {
		return id
	}
	return ""
}

// upperSnake turns "OrderStatus" into "ORDER_STATUS".
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// camel turns "kitchen-placed-orders" into "KitchenPlacedOrders".
func camel(s string) string {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	for i, p := range parts {
		parts[i] = upperFirst(p)
	}
	return strings.Join(parts, "")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
