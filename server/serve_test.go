package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestServe runs Serve as diaryd does, without TLS: gRPC over unencrypted
// HTTP/2 and Connect over HTTP/1.1, health and reflection beside the
// services, and a shutdown that ends streams, finishes requests in flight
// and records device sync times.
func TestServe(t *testing.T) {
	db := MustOpenDB(t)
	nav := newWriter(MustEnrollDevice(t, db, study.RoleNavigator, "PN-A"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- New(Config{Store: db, Heartbeat: time.Hour}).Serve(ctx, ln, ServeOptions{ShutdownTimeout: 5 * time.Second})
	}()

	grpc := diaryv1connect.NewSyncServiceClient(h2cClient(), url, connect.WithGRPC(), connect.WithInterceptors(authHeader(bearer(nav.Token))))
	http1 := diaryv1connect.NewSyncServiceClient(http.DefaultClient, url, connect.WithInterceptors(authHeader(bearer(nav.Token))))

	t.Run("OK", func(t *testing.T) {
		_, changes := nav.newEntry("t", "b", false, false)
		resp, err := grpc.Push(context.Background(), &diaryv1.PushRequest{Changes: changes})
		wantCode(t, err, 0)
		if len(resp.GetResults()) != len(changes) {
			t.Fatalf("push: %v", resp)
		}
		page, err := http1.Pull(context.Background(), &diaryv1.PullRequest{})
		wantCode(t, err, 0)
		if len(page.GetEntries()) != 1 {
			t.Fatalf("pull: %v", page)
		}
	})

	t.Run("OKHealth", func(t *testing.T) {
		resp, err := http.Post(url+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{"service":"diary.v1.SyncService"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "SERVING") {
			t.Fatalf("health: %s %s", resp.Status, body)
		}
	})

	t.Run("OKReflection", func(t *testing.T) {
		stream := grpcreflect.NewClient(h2cClient(), url, connect.WithGRPC()).NewStream(context.Background())
		defer stream.Close()
		names, err := stream.ListServices()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []protoreflect.FullName{diaryv1connect.SyncServiceName, diaryv1connect.DeviceServiceName, diaryv1connect.AdminServiceName, diaryv1connect.ResearchServiceName} {
			if !slices.Contains(names, want) {
				t.Errorf("reflection lists %v, not %s", names, want)
			}
		}
	})

	t.Run("OKShutdown", func(t *testing.T) {
		// Streams over HTTP/2 and over plain HTTP/1.1 end at shutdown.
		stream, err := grpc.Subscribe(context.Background(), &diaryv1.SubscribeRequest{})
		wantCode(t, err, 0)
		if !stream.Receive() {
			t.Fatal(stream.Err())
		}
		stream1, err := http1.Subscribe(context.Background(), &diaryv1.SubscribeRequest{})
		wantCode(t, err, 0)
		if !stream1.Receive() {
			t.Fatal(stream1.Err())
		}
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after its context ended")
		}
		for stream.Receive() {
		}
		wantCode(t, stream.Err(), connect.CodeUnavailable)
		for stream1.Receive() {
		}
		wantCode(t, stream1.Err(), connect.CodeUnavailable)
		// The pull above was recorded as the device's last sync.
		var last *int64
		if err := rawDB(db).QueryRow(`SELECT last_sync_at FROM devices WHERE id = ?`, nav.DeviceID).Scan(&last); err != nil {
			t.Fatal(err)
		}
		if last == nil || time.Since(time.UnixMilli(*last)) > time.Minute {
			t.Fatalf("last sync %v, want the pull's time", last)
		}
		if _, err := http1.Pull(context.Background(), &diaryv1.PullRequest{}); err == nil {
			t.Fatal("the server still answers after shutdown")
		}
	})
}

// TestServe_ErrTLS checks that a TLS setup missing half its files is
// refused before serving, and that the listener is not left open.
func TestServe_ErrTLS(t *testing.T) {
	db := MustOpenDB(t)
	for _, opts := range []ServeOptions{{TLSCert: "cert.pem"}, {TLSKey: "key.pem"}, {TLSCert: "missing.pem", TLSKey: "missing.pem"}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = New(Config{Store: db}).Serve(context.Background(), ln, opts)
		if err == nil || !strings.Contains(err.Error(), "TLS") {
			t.Fatalf("Serve with %+v: %v", opts, err)
		}
		if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			c.Close()
			t.Fatalf("Serve with %+v left its listener open", opts)
		}
	}
}
