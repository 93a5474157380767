package mail

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// A notice body is plain text: paragraphs separated by blank lines, and
// lists whose items start with "- ", "* " or "• " (unordered) or "1. " /
// "1) " (ordered); an indented line after an item continues it. Both parts
// are rendered from the same parsed blocks, so they hold the same words.

// block is a paragraph (items == nil) or a list.
type block struct {
	lines   []string   // a paragraph's lines
	items   [][]string // a list's items, each its lines
	ordered bool
	start   int // first number of an ordered list
}

var (
	bulletItem  = regexp.MustCompile(`^\s*[-*•]\s+(.*)$`)
	orderedItem = regexp.MustCompile(`^\s*(\d{1,3})[.)]\s+(.*)$`)
)

// parse splits a body into blocks. Line endings are normalised and
// trailing white space is dropped.
func parse(body string) []block {
	body = strings.ReplaceAll(body, "\r\n", "\n")
	body = strings.ReplaceAll(body, "\r", "\n")
	var blocks []block
	var cur *block
	flush := func() {
		if cur != nil && (len(cur.lines) > 0 || len(cur.items) > 0) {
			blocks = append(blocks, *cur)
		}
		cur = nil
	}
	for _, raw := range strings.Split(body, "\n") {
		line := strings.TrimRight(raw, " \t")
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if m := orderedItem.FindStringSubmatch(line); m != nil {
			if cur == nil || cur.items == nil || !cur.ordered {
				flush()
				n, _ := strconv.Atoi(m[1])
				cur = &block{items: [][]string{}, ordered: true, start: n}
			}
			cur.items = append(cur.items, []string{m[2]})
			continue
		}
		if m := bulletItem.FindStringSubmatch(line); m != nil {
			if cur == nil || cur.items == nil || cur.ordered {
				flush()
				cur = &block{items: [][]string{}}
			}
			cur.items = append(cur.items, []string{m[1]})
			continue
		}
		if cur != nil && cur.items != nil {
			if line != strings.TrimLeft(line, " \t") {
				last := len(cur.items) - 1
				cur.items[last] = append(cur.items[last], strings.TrimSpace(line))
				continue
			}
			flush()
		}
		if cur == nil {
			cur = &block{}
		}
		cur.lines = append(cur.lines, strings.TrimSpace(line))
	}
	flush()
	return blocks
}

// writeText writes the text/plain part: the blocks as plain text, then the
// footer.
func writeText(w io.Writer, n Notice, doc []block) error {
	bw := textWriter{bufio.NewWriter(w)}
	for i, b := range doc {
		if i > 0 {
			bw.put("\n")
		}
		if b.items == nil {
			for _, l := range b.lines {
				bw.put(l + "\n")
			}
			continue
		}
		for j, item := range b.items {
			marker := "- "
			if b.ordered {
				marker = strconv.Itoa(b.start+j) + ". "
			}
			for k, l := range item {
				if k == 0 {
					bw.put(marker + l + "\n")
				} else {
					bw.put(strings.Repeat(" ", len(marker)) + l + "\n")
				}
			}
		}
	}
	bw.put("\n----\n")
	for _, l := range footerLines(n) {
		bw.put(l + "\n")
	}
	return bw.Flush()
}

// Inline styles only: many clients drop <style> elements and external
// sheets. The layout is one column that narrows with the screen, and long
// words (ids, numbers) wrap instead of widening it.
const (
	styleBody   = "margin:0;padding:0;background-color:#ffffff;"
	styleWrap   = "max-width:600px;margin:0 auto;padding:16px;font-family:Arial,Helvetica,sans-serif;font-size:16px;line-height:1.5;color:#1a1a1a;overflow-wrap:break-word;word-wrap:break-word;"
	styleP      = "margin:0 0 16px 0;"
	styleList   = "margin:0 0 16px 0;padding:0 0 0 24px;"
	styleItem   = "margin:0 0 8px 0;"
	styleRule   = "border:0;border-top:1px solid #cccccc;margin:24px 0 16px 0;"
	styleFooter = "margin:0 0 8px 0;font-size:14px;line-height:1.4;color:#4a4a4a;"
)

// writeHTML writes the text/html part: the same blocks, escaped, as
// paragraphs and lists, then the footer. No links, images or scripts.
func writeHTML(w io.Writer, n Notice, doc []block) error {
	bw := textWriter{bufio.NewWriter(w)}
	esc := html.EscapeString
	lines := func(ls []string) string {
		parts := make([]string, len(ls))
		for i, l := range ls {
			parts[i] = esc(l)
		}
		return strings.Join(parts, "<br>\n")
	}
	bw.put("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n" +
		"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	bw.putf("<title>%s</title>\n</head>\n", esc(n.Subject))
	bw.putf("<body style=\"%s\">\n<div style=\"%s\">\n", styleBody, styleWrap)
	for _, b := range doc {
		if b.items == nil {
			bw.putf("<p style=\"%s\">%s</p>\n", styleP, lines(b.lines))
			continue
		}
		tag := "ul"
		if b.ordered {
			tag = "ol"
		}
		if b.ordered && b.start != 1 {
			bw.putf("<ol start=\"%d\" style=\"%s\">\n", b.start, styleList)
		} else {
			bw.putf("<%s style=\"%s\">\n", tag, styleList)
		}
		for _, item := range b.items {
			bw.putf("<li style=\"%s\">%s</li>\n", styleItem, lines(item))
		}
		bw.putf("</%s>\n", tag)
	}
	bw.putf("<hr style=\"%s\">\n", styleRule)
	for _, l := range footerLines(n) {
		bw.putf("<p style=\"%s\">%s</p>\n", styleFooter, esc(l))
	}
	bw.put("</div>\n</body>\n</html>\n")
	return bw.Flush()
}

// textWriter writes through a bufio.Writer, whose first error sticks and
// is the one Flush returns.
type textWriter struct{ *bufio.Writer }

func (w textWriter) put(s string) { _, _ = w.WriteString(s) }

func (w textWriter) putf(format string, a ...any) { _, _ = fmt.Fprintf(w.Writer, format, a...) }
