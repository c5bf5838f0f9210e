package devstack

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"golang.org/x/crypto/pbkdf2"
)

// FerretDB 1.24 on SQLite takes no notice of credentials, so the store's
// wire proxy checks them itself: a connection must authenticate with
// SCRAM-SHA-256 (RFC 5802 and 7677, as MongoDB does it over saslStart and
// saslContinue) before any command but the handshake reaches FerretDB.
// FerretDB listens on a private port that only the proxy uses.

// scramIterations is MongoDB's default for SCRAM-SHA-256. The keys are
// derived once, when the proxy starts; clients cache theirs per salt.
const scramIterations = 15000

const scramMechanism = "SCRAM-SHA-256"

// scramServer holds what the server side of SCRAM-SHA-256 needs for one
// user: never the password itself.
type scramServer struct {
	user       string
	salt       []byte
	iterations int
	storedKey  []byte
	serverKey  []byte
	// nonce is the server's part of a conversation's nonce.
	nonce func() string
}

// newSCRAMServer derives the user's keys with a fresh salt. The password
// is used as is: SASLprep leaves the passwords LoadOrCreateCredentials
// allows (ASCII letters, digits and -_.) unchanged.
func newSCRAMServer(user, password string) *scramServer {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	return deriveSCRAMServer(user, password, salt, scramIterations, randomNonce)
}

func deriveSCRAMServer(user, password string, salt []byte, iterations int, nonce func() string) *scramServer {
	salted := pbkdf2.Key([]byte(password), salt, iterations, sha256.Size, sha256.New)
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return &scramServer{user: user, salt: salt, iterations: iterations, nonce: nonce,
		storedKey: stored[:], serverKey: hmacSHA256(salted, "Server Key")}
}

func randomNonce() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// authFailed is all a client learns of why it was refused, as with
// MongoDB: no telling a wrong user from a wrong password.
const authFailed = "Authentication failed."

// scramConversation is one authentication attempt on a connection, between
// saslStart and its last saslContinue.
type scramConversation struct {
	gs2Header       string // "n,,": no channel binding, no authzid
	clientFirstBare string
	serverFirst     string
	nonce           string // the client's and ours
	serverFinal     string // sent; a last empty saslContinue may follow
}

// start answers a client-first message with the server-first one; ok is
// false when the message is malformed or names another user.
func (s *scramServer) start(clientFirst []byte) (_ *scramConversation, _ []byte, ok bool) {
	msg := string(clientFirst)
	// gs2-header: a channel binding flag, an optional authzid, then the
	// bare message. The proxy offers no channel binding ("p=" is refused;
	// "y" says the client could but thinks we cannot, which is true).
	flag, rest, ok1 := strings.Cut(msg, ",")
	authzid, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 || (flag != "n" && flag != "y") || (authzid != "" && authzid != "a="+s.user) {
		return nil, nil, false
	}
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") || len(attrs[1]) < 3 {
		return nil, nil, false
	}
	if unescapeSASLName(attrs[0][2:]) != s.user {
		return nil, nil, false
	}
	for _, a := range attrs[2:] {
		if strings.HasPrefix(a, "m=") { // mandatory extensions: none known
			return nil, nil, false
		}
	}
	c := &scramConversation{
		gs2Header:       flag + "," + authzid + ",",
		clientFirstBare: bare,
		nonce:           attrs[1][2:] + s.nonce(),
	}
	c.serverFirst = fmt.Sprintf("r=%s,s=%s,i=%d", c.nonce, base64.StdEncoding.EncodeToString(s.salt), s.iterations)
	return c, []byte(c.serverFirst), true
}

// finish checks the client-final message's proof and answers with the
// server's signature, which proves to the client that we know its keys;
// ok is false when the proof is wrong.
func (s *scramServer) finish(c *scramConversation, clientFinal []byte) (_ []byte, ok bool) {
	msg := string(clientFinal)
	withoutProof, proofAttr, found := strings.Cut(msg, ",p=")
	if !found || strings.Contains(proofAttr, ",") {
		return nil, false
	}
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) < 2 || attrs[0] != "c="+base64.StdEncoding.EncodeToString([]byte(c.gs2Header)) || attrs[1] != "r="+c.nonce {
		return nil, false
	}
	proof, err := base64.StdEncoding.DecodeString(proofAttr)
	if err != nil || len(proof) != sha256.Size {
		return nil, false
	}
	authMessage := c.clientFirstBare + "," + c.serverFirst + "," + withoutProof
	clientSignature := hmacSHA256(s.storedKey, authMessage)
	clientKey := make([]byte, sha256.Size)
	subtle.XORBytes(clientKey, proof, clientSignature)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.storedKey) != 1 {
		return nil, false
	}
	c.serverFinal = "v=" + base64.StdEncoding.EncodeToString(hmacSHA256(s.serverKey, authMessage))
	return []byte(c.serverFinal), true
}

// unescapeSASLName undoes SCRAM's escaping of ',' and '=' in a user name.
func unescapeSASLName(s string) string {
	return strings.NewReplacer("=2C", ",", "=3D", "=").Replace(s)
}

// authSession is the authentication state of one client connection.
type authSession struct {
	srv           *scramServer
	authenticated bool
	conv          *scramConversation
	// skipEmpty: the client asked to finish in one saslContinue.
	skipEmpty bool
}

// conversationID is the only conversation a connection has at a time.
const conversationID = 1

// Wire protocol opcodes besides OP_MSG.
const (
	opReply = 1
	opQuery = 2004
)

// handshakeCommands may run before authentication: the driver's hello, on
// which it learns how to authenticate (monitoring connections never do).
var handshakeCommands = map[string]bool{"hello": true, "isMaster": true, "ismaster": true}

// gateResult says what to do with a request on a connection that needs
// authentication: answer it (answer), forward it (forward, and rewrite the
// reply with fixReply when not nil), or close the connection.
type gateResult struct {
	answer   []byte
	forward  []byte
	fixReply func(reply []byte) []byte
	close    bool
}

var replyIDs atomic.Int32

// gate handles SASL itself, lets the handshake through (telling the client
// it may use SCRAM-SHA-256, and answering a speculative saslStart in it),
// and refuses every other command until the connection has authenticated.
func (a *authSession) gate(req []byte) gateResult {
	if a.authenticated && opCode(req) == opMsg {
		// Most traffic: read only the command's name, not the whole
		// document, which may be a large insert.
		if name, ok := firstKey(req); ok && !handshakeCommands[name] && name != "saslStart" && name != "saslContinue" {
			return gateResult{forward: req}
		}
	}
	doc, start, ok := bodyDocument(req)
	if !ok {
		if a.authenticated {
			return gateResult{forward: req}
		}
		return gateResult{close: true} // not a command we can read
	}
	query := opCode(req) == opQuery
	if query {
		// A legacy command may be wrapped as {$query: {...}}.
		if v, err := doc.LookupErr("$query"); err == nil {
			if inner, ok := v.DocumentOK(); ok {
				doc = inner
			}
		}
	}
	elems, err := doc.Elements()
	if err != nil || len(elems) == 0 {
		return gateResult{close: true}
	}
	cmd := elems[0].Key()
	reqID := int32(binary.LittleEndian.Uint32(req[4:8]))
	reply := func(d bsoncore.Document) gateResult {
		if query {
			return gateResult{answer: opReplyMessage(reqID, d)}
		}
		return gateResult{answer: opMsgMessage(reqID, d)}
	}
	switch {
	case handshakeCommands[cmd]:
		return a.hello(req, doc, start)
	case cmd == "saslStart" && !query:
		return reply(a.saslStart(doc))
	case cmd == "saslContinue" && !query:
		return reply(a.saslContinue(doc))
	case a.authenticated:
		return gateResult{forward: req}
	case flags(req)&moreToComeBit != 0:
		// An unacknowledged command expects no answer: refusing it is
		// closing the connection, as MongoDB does.
		return gateResult{close: true}
	}
	return reply(errorDocument(13, "Unauthorized", "Command "+cmd+" requires authentication"))
}

// hello forwards the handshake without the fields FerretDB would answer on
// its own behalf, and adds the proxy's answers to its reply.
func (a *authSession) hello(req []byte, doc bsoncore.Document, start int) gateResult {
	// Asked which mechanisms a user has, the answer is the same for every
	// name, so it tells nobody which users exist.
	_, err := doc.LookupErr("saslSupportedMechs")
	mechs := err == nil
	var spec bsoncore.Document
	if v, err := doc.LookupErr("speculativeAuthenticate"); err == nil {
		if d, ok := v.DocumentOK(); ok {
			if r := a.saslStart(d); isOK(r) {
				spec = withoutKey(r, "ok")
			}
		}
	}
	forward := req
	if _, err := doc.LookupErr("$query"); err != nil { // not wrapped: rewrite
		if stripped := withoutKey(withoutKey(doc, "saslSupportedMechs"), "speculativeAuthenticate"); len(stripped) != len(doc) {
			forward = replaceDocument(req, start, len(doc), stripped)
		}
	}
	fix := func(reply []byte) []byte {
		d, at, ok := bodyDocument(reply)
		if !ok {
			return reply
		}
		out := withoutKey(withoutKey(withoutKey(d, "saslSupportedMechs"), "speculativeAuthenticate"), "ok")
		idx, b := bsoncore.ReserveLength(nil)
		b = append(b, out[4:len(out)-1]...)
		if mechs {
			b = bsoncore.AppendArrayElement(b, "saslSupportedMechs", bsoncore.NewArrayBuilder().AppendString(scramMechanism).Build())
		}
		if spec != nil {
			b = bsoncore.AppendDocumentElement(b, "speculativeAuthenticate", spec)
		}
		okValue, err := d.LookupErr("ok")
		if err != nil {
			okValue = bsoncore.Value{Type: bsoncore.TypeDouble, Data: bsoncore.AppendDouble(nil, 1)}
		}
		b = bsoncore.AppendValueElement(b, "ok", okValue)
		b, _ = bsoncore.AppendDocumentEnd(b, idx)
		return replaceDocument(reply, at, len(d), b)
	}
	return gateResult{forward: forward, fixReply: fix}
}

// saslStart begins a conversation; it also serves the speculative one in a
// hello, which has the same fields.
func (a *authSession) saslStart(doc bsoncore.Document) bsoncore.Document {
	a.conv = nil
	mech, _ := doc.Lookup("mechanism").StringValueOK()
	if mech != scramMechanism {
		return errorDocument(2, "BadValue", fmt.Sprintf("Received authentication for mechanism %s which is not enabled", mech))
	}
	_, payload, ok := doc.Lookup("payload").BinaryOK()
	if !ok {
		return errorDocument(18, "AuthenticationFailed", authFailed)
	}
	conv, serverFirst, ok := a.srv.start(payload)
	if !ok {
		return errorDocument(18, "AuthenticationFailed", authFailed)
	}
	a.conv = conv
	a.skipEmpty = false
	if opts, ok := doc.Lookup("options").DocumentOK(); ok {
		a.skipEmpty, _ = opts.Lookup("skipEmptyExchange").BooleanOK()
	}
	return saslReply(false, serverFirst)
}

func (a *authSession) saslContinue(doc bsoncore.Document) bsoncore.Document {
	conv := a.conv
	if id, ok := doc.Lookup("conversationId").AsInt64OK(); !ok || id != conversationID || conv == nil {
		a.conv = nil
		return errorDocument(17, "ProtocolError", "No SASL session state found")
	}
	_, payload, _ := doc.Lookup("payload").BinaryOK()
	if conv.serverFinal != "" {
		// The empty exchange that ends a conversation without
		// skipEmptyExchange.
		a.conv = nil
		if len(payload) != 0 {
			return errorDocument(18, "AuthenticationFailed", authFailed)
		}
		a.authenticated = true
		return saslReply(true, nil)
	}
	serverFinal, ok := a.srv.finish(conv, payload)
	if !ok {
		a.conv = nil
		return errorDocument(18, "AuthenticationFailed", authFailed)
	}
	if a.skipEmpty {
		a.conv = nil
		a.authenticated = true
		return saslReply(true, serverFinal)
	}
	return saslReply(false, serverFinal)
}

func saslReply(done bool, payload []byte) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().
		AppendInt32("conversationId", conversationID).
		AppendBoolean("done", done).
		AppendBinary("payload", 0, payload).
		AppendDouble("ok", 1).
		Build()
}

// errorDocument is a command error as MongoDB answers it.
func errorDocument(code int32, codeName, msg string) bsoncore.Document {
	return bsoncore.NewDocumentBuilder().
		AppendDouble("ok", 0).
		AppendString("errmsg", msg).
		AppendInt32("code", code).
		AppendString("codeName", codeName).
		Build()
}

func isOK(d bsoncore.Document) bool {
	v, err := d.LookupErr("ok")
	if err != nil {
		return false
	}
	f, ok := v.AsFloat64OK()
	return ok && f == 1
}

// withoutKey is d without its top-level field key (d itself when it has
// none).
func withoutKey(d bsoncore.Document, key string) bsoncore.Document {
	elems, err := d.Elements()
	if err != nil {
		return d
	}
	found := false
	for _, e := range elems {
		if e.Key() == key {
			found = true
		}
	}
	if !found {
		return d
	}
	idx, b := bsoncore.ReserveLength(nil)
	for _, e := range elems {
		if e.Key() != key {
			b = append(b, e...)
		}
	}
	b, _ = bsoncore.AppendDocumentEnd(b, idx)
	return b
}

// firstKey is the name of an OP_MSG's command: the first key of its body
// document, read without reading the rest.
func firstKey(msg []byte) (string, bool) {
	// header (16), flags (4), section kind (1), length (4), element type (1)
	const at = 16 + 4 + 1 + 4 + 1
	if len(msg) <= at || msg[20] != 0 {
		return "", false
	}
	end := bytes.IndexByte(msg[at:], 0)
	if end < 0 {
		return "", false
	}
	return string(msg[at : at+end]), true
}

// bodyDocument finds the command (or reply) document of an OP_MSG,
// OP_QUERY or OP_REPLY message, and where it starts.
func bodyDocument(msg []byte) (bsoncore.Document, int, bool) {
	var at int
	switch opCode(msg) {
	case opMsg:
		if len(msg) < 21 || msg[20] != 0 {
			return nil, 0, false
		}
		at = 21
	case opQuery:
		// flags (4), then the collection name as a C string, then
		// numberToSkip and numberToReturn (4 each).
		if len(msg) < 20 {
			return nil, 0, false
		}
		end := bytes.IndexByte(msg[20:], 0)
		if end < 0 {
			return nil, 0, false
		}
		at = 20 + end + 1 + 8
	case opReply:
		// flags (4), cursorID (8), startingFrom (4), numberReturned (4).
		at = 36
	default:
		return nil, 0, false
	}
	if at >= len(msg) {
		return nil, 0, false
	}
	n, _, ok := bsoncore.ReadLength(msg[at:])
	if !ok || n < 5 || at+int(n) > len(msg) {
		return nil, 0, false
	}
	doc := bsoncore.Document(msg[at : at+int(n)])
	if doc.Validate() != nil {
		return nil, 0, false
	}
	return doc, at, true
}

// replaceDocument returns msg with the document of length n at at replaced
// by doc, its length fixed. An OP_MSG loses its checksum, which no longer
// holds.
func replaceDocument(msg []byte, at, n int, doc bsoncore.Document) []byte {
	tail := msg[at+n:]
	out := make([]byte, 0, len(msg)-n+len(doc))
	out = append(out, msg[:at]...)
	if opCode(msg) == opMsg && flags(msg)&checksumBit != 0 {
		tail = tail[:len(tail)-4]
		binary.LittleEndian.PutUint32(out[16:20], flags(msg)&^checksumBit)
	}
	out = append(out, doc...)
	out = append(out, tail...)
	binary.LittleEndian.PutUint32(out[0:4], uint32(len(out)))
	return out
}

const checksumBit = 1 << 0

// opMsgMessage is an OP_MSG reply to request reqID holding d.
func opMsgMessage(reqID int32, d bsoncore.Document) []byte {
	b := make([]byte, 21, 21+len(d))
	binary.LittleEndian.PutUint32(b[4:8], uint32(replyIDs.Add(1)))
	binary.LittleEndian.PutUint32(b[8:12], uint32(reqID))
	binary.LittleEndian.PutUint32(b[12:16], opMsg)
	b = append(b, d...)
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(b)))
	return b
}

// opReplyMessage is an OP_REPLY to legacy request reqID holding d.
func opReplyMessage(reqID int32, d bsoncore.Document) []byte {
	b := make([]byte, 36, 36+len(d))
	binary.LittleEndian.PutUint32(b[4:8], uint32(replyIDs.Add(1)))
	binary.LittleEndian.PutUint32(b[8:12], uint32(reqID))
	binary.LittleEndian.PutUint32(b[12:16], opReply)
	binary.LittleEndian.PutUint32(b[32:36], 1) // numberReturned
	b = append(b, d...)
	binary.LittleEndian.PutUint32(b[0:4], uint32(len(b)))
	return b
}
