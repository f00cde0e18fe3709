package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteContainers prints one line per container: name, zone, address, MAC,
// host veth and namespace; attach errors follow the table.
func WriteContainers(w io.Writer, cs []*Container) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tZONE\tIP\tMAC\tHOST VETH\tNETNS")
	var failed []*Container
	for _, c := range cs {
		ip := "-"
		switch {
		case c.Err != nil:
			ip = "FAILED"
			failed = append(failed, c)
		case c.IP.IsValid():
			ip = c.IP.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Zone, ip, orDash(c.MAC), orDash(c.HostVeth), c.Netns)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range failed {
		if _, err := fmt.Fprintf(w, "%s: %s\n", c.Name, oneLine(c.Err.Error())); err != nil {
			return err
		}
	}
	return nil
}

// WriteMatrix prints the matrix: rows connect to columns. A cell that
// differs from want (when want has cells) is marked with '!'.
func WriteMatrix(w io.Writer, got Matrix, want *Matrix) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"FROM \\ TO"}
	for _, c := range got.Cols {
		header = append(header, c.Name)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for i, r := range got.Rows {
		line := []string{r.Name}
		for j, c := range got.Cols {
			cell := got.Cells[i][j].Outcome.String()
			if want != nil {
				if wo, ok := want.At(r.Name, c.Name); ok && wo != got.Cells[i][j].Outcome {
					cell += "!"
				}
			}
			line = append(line, cell)
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	return tw.Flush()
}

// MatrixLegend explains the cell values.
const MatrixLegend = `  ok: connected, the right peer answered   refused: RST or port unreachable   timeout: no answer
  unreach: no route or host unreachable    wrong: another peer answered        -: not probed
  !: differs from the expected policy
`

// Summary counts the outcomes of a matrix, e.g. "42 ok, 7 timeout".
func Summary(m Matrix) string {
	counts := map[Outcome]int{}
	for _, row := range m.Cells {
		for _, c := range row {
			if c.Outcome != Skip {
				counts[c.Outcome]++
			}
		}
	}
	var parts []string
	for o := OK; o <= Failed; o++ {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
		}
	}
	if len(parts) == 0 {
		return "nothing probed"
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return truncate(s, 400)
}
