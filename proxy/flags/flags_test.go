package flags

import "testing"

func TestString(t *testing.T) {
	tests := []struct {
		f    Flags
		want string
	}{
		{0, ""},
		{NoHealthyUpstream, "UH"},
		{UpstreamConnectFailure, "UF"},
		{UpstreamOverflow, "UO"},
		{NoRoute, "NR"},
		{NoClusterFound, "NC"},
		{UpstreamRetryLimit, "URX"},
		{UpstreamRequestTimeout, "UT"},
		{UpstreamConnectionTerm, "UC"},
		{DownstreamConnectionTerm, "DC"},
		{UpstreamRemoteReset, "UR"},
		{LocalReset, "LR"},
		{RateLimited, "RL"},
		{OverloadManager, "OM"},
		{StreamIdleTimeout, "SI"},
		{RateLimitServiceError, "RLSE"},
		{RateLimitServiceError | DownstreamConnectionTerm | RateLimited, "RL,RLSE,DC"},
		{UpstreamConnectFailure | UpstreamRetryLimit, "UF,URX"},
		{UpstreamRetryLimit | UpstreamRemoteReset | NoHealthyUpstream, "UH,UR,URX"},
		{UpstreamRetryLimit | UpstreamRequestTimeout | UpstreamConnectionTerm, "UT,UC,URX"},
		{OverloadManager | NoClusterFound | DownstreamConnectionTerm | LocalReset | RateLimited | StreamIdleTimeout, "LR,RL,DC,SI,NC,OM"},
		{^Flags(0) >> (16 - count), "UH,UT,LR,UR,UF,UC,UO,NR,RL,RLSE,DC,URX,SI,NC,OM"},
	}
	for _, tt := range tests {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint16(tt.f), got, tt.want)
		}
	}
}

func TestSingleFlagDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = UpstreamRequestTimeout.String() }); n != 0 {
		t.Fatalf("String of one flag allocates %v times", n)
	}
}

func TestHas(t *testing.T) {
	f := UpstreamConnectFailure | UpstreamRetryLimit
	if !f.Has(UpstreamRetryLimit) || f.Has(NoRoute) || !f.Has(UpstreamConnectFailure|UpstreamRetryLimit) {
		t.Fatalf("Has is wrong for %v", f)
	}
}
