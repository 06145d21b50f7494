package fenced

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is a fenced register as a row of the table fenced:
//
//	UPDATE fenced SET last_token = $token, ...
//	WHERE name = $name AND last_token < $token AND read_token < $token
//
// and a fenced read raises read_token WHERE last_token < $token.
type Postgres struct {
	pool *pgxpool.Pool
	made sync.Map // names whose row exists
}

// NewPostgres creates the table fenced in pool's database (if missing).
func NewPostgres(ctx context.Context, pool *pgxpool.Pool) (*Postgres, error) {
	_, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS fenced (
		name       text PRIMARY KEY,
		last_token bigint NOT NULL,
		read_token bigint NOT NULL DEFAULT 0,
		holder     text   NOT NULL,
		value      bigint NOT NULL,
		version    bigint NOT NULL)`)
	if err != nil {
		return nil, fmt.Errorf("fenced: create table: %w", err)
	}
	return &Postgres{pool: pool}, nil
}

func (p *Postgres) row(ctx context.Context, name string) error {
	if _, ok := p.made.Load(name); ok {
		return nil
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO fenced (name, last_token, holder, value, version)
		VALUES ($1, 0, '', 0, 0) ON CONFLICT (name) DO NOTHING`, name)
	if err != nil {
		return fmt.Errorf("fenced: insert %s: %w", name, err)
	}
	p.made.Store(name, true)
	return nil
}

// Write implements Store.
func (p *Postgres) Write(ctx context.Context, name string, token uint64, holder string, value int64) (bool, int64, error) {
	if err := p.row(ctx, name); err != nil {
		return false, 0, err
	}
	var version int64
	err := p.pool.QueryRow(ctx, `UPDATE fenced
		SET last_token = $2, holder = $3, value = $4, version = version + 1
		WHERE name = $1 AND last_token < $2 AND read_token < $2
		RETURNING version`, name, int64(token), holder, value).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, 0, nil
	case err != nil:
		return false, 0, fmt.Errorf("fenced: write %s: %w", name, err)
	}
	return true, version, nil
}

// ReadFenced implements Store.
func (p *Postgres) ReadFenced(ctx context.Context, name string, token uint64, _ string) (bool, int64, int64, error) {
	if err := p.row(ctx, name); err != nil {
		return false, 0, 0, err
	}
	var value, version int64
	err := p.pool.QueryRow(ctx, `UPDATE fenced
		SET read_token = GREATEST(read_token, $2), version = version + 1
		WHERE name = $1 AND last_token < $2
		RETURNING value, version`, name, int64(token)).Scan(&value, &version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, 0, 0, nil
	case err != nil:
		return false, 0, 0, fmt.Errorf("fenced: read %s: %w", name, err)
	}
	return true, value, version, nil
}

// Read implements Store.
func (p *Postgres) Read(ctx context.Context, name string) (int64, error) {
	if err := p.row(ctx, name); err != nil {
		return 0, err
	}
	var v int64
	if err := p.pool.QueryRow(ctx, `SELECT value FROM fenced WHERE name = $1`, name).Scan(&v); err != nil {
		return 0, fmt.Errorf("fenced: read %s: %w", name, err)
	}
	return v, nil
}
