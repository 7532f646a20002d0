package postgres_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/server/postgres"
	"github.com/jackc/pgx/v5"
)

// TestOpen_SameMoment opens eight stores at once on one empty database
// (no template: the migrations run here) and has each ensure the first
// administrator: the migrations are applied once, and exactly one store
// creates the administrator and gets a code.
func TestOpen_SameMoment(t *testing.T) {
	ctx := context.Background()
	base := storetest.PostgresURL(t)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const name = "diarysync_test_same_moment"
	conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
	url, err := storetest.WithDatabase(base, name)
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	var wg sync.WaitGroup
	created := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(ctx, url, postgres.Options{})
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			code, ok, err := db.EnsureAdmin(ctx)
			if err != nil {
				errs <- err
				return
			}
			if ok {
				created <- code
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(created)
	for err := range errs {
		t.Fatal(err)
	}
	var codes []string
	for c := range created {
		codes = append(codes, c)
	}
	if len(codes) != 1 || codes[0] == "" {
		t.Fatalf("%d stores created the administrator (codes %q), want exactly one", len(codes), codes)
	}
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	var migrations, admins, codesStored int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM schema_migrations), (SELECT count(*) FROM users), (SELECT count(*) FROM enrollment_codes)`).Scan(&migrations, &admins, &codesStored); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if migrations != len(files) || admins != 1 || codesStored != 1 {
		t.Fatalf("%d migrations recorded, %d users, %d codes; want %d (each once), 1, 1", migrations, admins, codesStored, len(files))
	}
}
