package embed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// HTTP embeds with an OpenAI-compatible server's POST /v1/embeddings.
type HTTP struct {
	url, model, apiKey string
	client             *http.Client
}

// NewHTTP returns an embedder that posts to base + "/v1/embeddings" (base
// may already end in /v1 or /v1/embeddings), sending model if not "" and
// apiKey as a bearer token if not "".
func NewHTTP(base, model, apiKey string) *HTTP {
	u := strings.TrimRight(base, "/")
	switch {
	case strings.HasSuffix(u, "/v1/embeddings"):
	case strings.HasSuffix(u, "/v1"):
		u += "/embeddings"
	default:
		u += "/v1/embeddings"
	}
	return &HTTP{url: u, model: model, apiKey: apiKey, client: &http.Client{Timeout: 30 * time.Second}}
}

// Name returns "http:URL".
func (h *HTTP) Name() string { return "http:" + h.url }

// Embed posts the texts in one request.
func (h *HTTP) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	body, _ := json.Marshal(map[string]any{"input": texts, "model": h.model, "encoding_format": "float"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("embedder %s: %w", h.url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if h.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+h.apiKey)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("embedder %s: %w", h.url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("embedder %s: reading the answer: %w", h.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("embedder %s: status %s: %.200s", h.url, resp.Status, data)
	}
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("embedder %s: the answer is not an embedding list: %v", h.url, err)
	}
	if len(out.Data) != len(texts) {
		return nil, fmt.Errorf("embedder %s: %d embeddings for %d inputs", h.url, len(out.Data), len(texts))
	}
	vecs := make([][]float32, len(texts))
	for _, d := range out.Data {
		if d.Index < 0 || d.Index >= len(texts) || vecs[d.Index] != nil || len(d.Embedding) == 0 {
			return nil, fmt.Errorf("embedder %s: bad or repeated index %d", h.url, d.Index)
		}
		vecs[d.Index] = d.Embedding
	}
	return vecs, nil
}
