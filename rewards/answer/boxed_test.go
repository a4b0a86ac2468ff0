package answer

import "testing"

func TestBoxed(t *testing.T) {
	tests := []struct {
		name, text, want string
		ok               bool
	}{
		{"boxed", `so \boxed{5}.`, "5", true},
		{"nested braces", `$\boxed{\frac{1}{2}}$`, `\frac{1}{2}`, true},
		{"fbox", `\fbox{5}`, "5", true},
		{"spaced form", `so \boxed 5`, "5", true},
		{"last box counts", `\boxed{4} no, \boxed{5}`, "5", true},
		{"empty", `\boxed{}`, "", false},
		{"nothing left after normalization", `\boxed{\text{}}`, "", false},
		{"last box empty", `\boxed{5} then \boxed{ }`, "", false},
		{"unterminated", `\boxed{5`, "", false},
		{"another command", `\boxedfoo{5}`, "", false},
		{"no box", `the answer is 5`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Boxed(tt.text)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Boxed(%q) = %q, %v, want %q, %v", tt.text, got, ok, tt.want, tt.ok)
			}
			// A boxed answer is the one Extract reads.
			if ext, _ := Extract(tt.text); ok && ext != got {
				t.Errorf("Boxed(%q) = %q but Extract reads %q", tt.text, got, ext)
			}
		})
	}
}
