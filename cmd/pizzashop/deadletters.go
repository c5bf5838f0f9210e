package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pizzashop/pizzashop/pkg/config"
	"github.com/pizzashop/pizzashop/pkg/natsx"
)

// runDeadLetters lists and replays the messages that consumers gave up on,
// which wait on the DEADLETTER stream with headers saying where they came
// from and why they failed.
//
//	pizzashop deadletters list
//	pizzashop deadletters replay 12 15     (dead-letter sequence numbers)
//	pizzashop deadletters replay --all
//
// A replay publishes the original message again on its original subject,
// under a new message id, and removes it from DEADLETTER once JetStream has
// stored it. Consumers are idempotent, so a replay of something already
// applied changes nothing.
func runDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageErrorf("deadletters: want \"list\" or \"replay\"")
	}
	verb, rest := args[0], args[1:]
	if verb != "list" && verb != "replay" {
		return usageErrorf("deadletters: unknown verb %q: want list or replay", verb)
	}
	fs := newFlagSet("deadletters "+verb, "pizzashop deadletters list|replay [--nats URL] [--all | SEQ ...]", stderr)
	url := fs.String("nats", defaultNATSURL(), natsFlagUsage)
	all := fs.Bool("all", false, "replay every dead letter")
	// Flags may come before or after the sequence numbers.
	pos, err := parseArgs(fs, rest)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, a := range pos {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return usageErrorf("deadletters: %q is not a dead-letter sequence number", a)
		}
		seqs = append(seqs, n)
	}
	// Every mistake in the command line is told before NATS is asked.
	switch {
	case verb == "list" && (len(seqs) > 0 || *all):
		return usageErrorf("deadletters list takes no arguments")
	case verb == "replay" && *all == (len(seqs) > 0):
		return usageErrorf("deadletters replay: give sequence numbers or --all, not both or neither")
	}
	nc, err := nats.Connect(natsURL(*url), nats.Name("pizzashop deadletters"), nats.Timeout(5*time.Second))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", config.RedactURL(*url), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := js.Stream(ctx, natsx.DeadLetterStream.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		fmt.Fprintln(stdout, "no dead letters (the DEADLETTER stream does not exist yet)")
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", natsx.DeadLetterStream.Name, err)
	}
	if verb == "list" {
		return listDeadLetters(ctx, st, stdout)
	}
	if *all {
		if seqs, err = deadLetterSeqs(ctx, st); err != nil {
			return err
		}
	}
	// One letter that cannot go back does not hold up the others: each is
	// tried, and the command fails at the end naming every one that stayed.
	var failed []error
	for _, seq := range seqs {
		if err := replayDeadLetter(ctx, js, st, seq, stdout); err != nil {
			if ctx.Err() != nil {
				return err
			}
			failed = append(failed, err)
		}
	}
	return errors.Join(failed...)
}

func deadLetterSeqs(ctx context.Context, st jetstream.Stream) ([]uint64, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if _, err := st.GetMsg(ctx, seq); err == nil {
			seqs = append(seqs, seq)
		}
	}
	return seqs, nil
}

func listDeadLetters(ctx context.Context, st jetstream.Stream, w io.Writer) error {
	seqs, err := deadLetterSeqs(ctx, st)
	if err != nil {
		return err
	}
	if len(seqs) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tCONSUMER\tSUBJECT\tDELIVERIES\tBYTES\tERROR")
	for _, seq := range seqs {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		h := m.Header
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", seq, m.Time.UTC().Format(time.RFC3339),
			h.Get(natsx.HeaderDLConsumer), h.Get(natsx.HeaderDLSubject), h.Get(natsx.HeaderDLDeliveries), len(m.Data), h.Get(natsx.HeaderDLError))
	}
	return tw.Flush()
}

func replayDeadLetter(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, seq uint64, w io.Writer) error {
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	subject := m.Header.Get(natsx.HeaderDLSubject)
	if subject == "" {
		return fmt.Errorf("dead letter %d has no %s header; cannot tell where it came from", seq, natsx.HeaderDLSubject)
	}
	msg := nats.NewMsg(subject)
	msg.Data = m.Data
	for k, v := range m.Header {
		if !strings.HasPrefix(k, "Pizzashop-Dl-") {
			msg.Header[k] = v
		}
	}
	id := fmt.Sprintf("replay-%s-%d", m.Header.Get(natsx.HeaderDLMsgID), seq)
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
		return fmt.Errorf("replay dead letter %d to %s: %w", seq, subject, err)
	}
	if err := st.DeleteMsg(ctx, seq); err != nil {
		return fmt.Errorf("replayed dead letter %d but could not remove it: %w", seq, err)
	}
	fmt.Fprintf(w, "replayed %d to %s\n", seq, subject)
	return nil
}
