package outlier

import "testing"

func TestClassify(t *testing.T) {
	tests := []struct {
		name           string
		httpStatus     int
		grpcStatus     int
		connectFailure bool
		reset          bool
		want           Result
	}{
		{name: "200", httpStatus: 200, grpcStatus: -1, want: Success},
		{name: "404 is the client's doing", httpStatus: 404, grpcStatus: -1, want: Success},
		{name: "429", httpStatus: 429, grpcStatus: -1, want: Success},
		{name: "500", httpStatus: 500, grpcStatus: -1, want: Error},
		{name: "501", httpStatus: 501, grpcStatus: -1, want: Error},
		{name: "502", httpStatus: 502, grpcStatus: -1, want: GatewayFailure},
		{name: "503", httpStatus: 503, grpcStatus: -1, want: GatewayFailure},
		{name: "504 (a timeout the proxy answered)", httpStatus: 504, grpcStatus: -1, want: GatewayFailure},
		{name: "599", httpStatus: 599, grpcStatus: -1, want: Error},
		{name: "connect failure", httpStatus: 503, grpcStatus: -1, connectFailure: true, want: GatewayFailure},
		{name: "reset without a status", grpcStatus: -1, reset: true, want: GatewayFailure},
		{name: "reset after a 200", httpStatus: 200, grpcStatus: -1, reset: true, want: GatewayFailure},
		{name: "no response, nothing known", grpcStatus: -1, want: Success},
		{name: "grpc OK", httpStatus: 200, grpcStatus: 0, want: Success},
		{name: "grpc CANCELLED", httpStatus: 200, grpcStatus: 1, want: Success},
		{name: "grpc UNKNOWN", httpStatus: 200, grpcStatus: 2, want: Error},
		{name: "grpc INVALID_ARGUMENT", httpStatus: 200, grpcStatus: 3, want: Success},
		{name: "grpc DEADLINE_EXCEEDED", httpStatus: 200, grpcStatus: 4, want: GatewayFailure},
		{name: "grpc NOT_FOUND", httpStatus: 200, grpcStatus: 5, want: Success},
		{name: "grpc RESOURCE_EXHAUSTED", httpStatus: 200, grpcStatus: 8, want: Success},
		{name: "grpc UNIMPLEMENTED", httpStatus: 200, grpcStatus: 12, want: Success},
		{name: "grpc INTERNAL", httpStatus: 200, grpcStatus: 13, want: Error},
		{name: "grpc UNAVAILABLE", httpStatus: 200, grpcStatus: 14, want: GatewayFailure},
		{name: "grpc DATA_LOSS", httpStatus: 200, grpcStatus: 15, want: Error},
		{name: "grpc UNAUTHENTICATED", httpStatus: 200, grpcStatus: 16, want: Success},
		{name: "grpc status wins over the http status", httpStatus: 500, grpcStatus: 0, want: Success},
		{name: "grpc UNAVAILABLE on a 503", httpStatus: 503, grpcStatus: 14, want: GatewayFailure},
		{name: "grpc reset", httpStatus: 200, grpcStatus: 0, reset: true, want: GatewayFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.httpStatus, tt.grpcStatus, tt.connectFailure, tt.reset)
			if got != tt.want {
				t.Errorf("Classify(%d, %d, %t, %t) = %s, want %s",
					tt.httpStatus, tt.grpcStatus, tt.connectFailure, tt.reset, got, tt.want)
			}
		})
	}
}

func TestResultString(t *testing.T) {
	for r, want := range map[Result]string{Success: "success", Error: "error", GatewayFailure: "gateway_failure", 9: "unknown"} {
		if got := r.String(); got != want {
			t.Errorf("Result(%d).String() = %q, want %q", r, got, want)
		}
	}
}
