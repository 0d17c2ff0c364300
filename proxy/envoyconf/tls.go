package envoyconf

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

const (
	downstreamTLSType = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
	upstreamTLSType   = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	rawBufferType     = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// downstreamTLS translates a filter chain's transport socket into the
// listener's tls: its certificate and ALPN. A client certificate
// requirement or validation cannot be honoured (Sightline's listeners do
// not ask for client certificates), so it is unsafe to drop.
func (t *translator) downstreamTLS(s *scope, ts *corev3.TransportSocket, o *obj) {
	defer s.done()
	ctx := &tlsv3.DownstreamTlsContext{}
	cs, tls := tlsContext(s, ts, downstreamTLSType, "listeners", ctx, o)
	if cs == nil {
		return
	}
	defer cs.done()
	if ctx.GetRequireClientCertificate().GetValue() {
		cs.unsafe("require_client_certificate", "Sightline's listeners do not ask for client certificates: every client would be let in")
	} else {
		cs.carry("require_client_certificate")
	}
	cs.skip("require_sni", "Sightline serves clients without SNI too")
	for _, f := range []string{"session_ticket_keys", "session_ticket_keys_sds_secret_config", "disable_stateless_session_resumption",
		"disable_stateful_session_resumption", "session_timeout", "session_ticket_keys_type"} {
		cs.skip(f, "Sightline resumes sessions with Go's rotating ticket keys")
	}
	cs.skip("ocsp_staple_policy", "Sightline does no OCSP stapling")
	cs.skip("full_scan_certs_on_sni_mismatch", "Sightline serves one certificate per listener")
	cs.skip("prefer_client_ciphers", "Sightline lets Go order the cipher suites")
	common := ctx.GetCommonTlsContext()
	if common == nil {
		cs.fail("common_tls_context", "a listener's TLS context needs a certificate")
		return
	}
	ccs := cs.sub("common_tls_context", common, nil)
	defer ccs.done()
	if !t.certificate(ccs, common, tls) {
		ccs.fail("tls_certificates", "a listener's TLS context needs a certificate")
	}
	if common.GetValidationContextType() != nil {
		for _, f := range []string{"validation_context", "validation_context_sds_secret_config", "combined_validation_context",
			"validation_context_certificate_provider", "validation_context_certificate_provider_instance"} {
			ccs.unsafe(f, "Sightline's listeners do not verify client certificates: clients Envoy refuses would be let in")
		}
	}
	if alpn := common.GetAlpnProtocols(); len(alpn) > 0 {
		var protos []any
		for _, a := range alpn {
			switch a {
			case "h2":
				protos = append(protos, "h2")
			case "http/1.1":
				protos = append(protos, "http1")
			}
		}
		if len(protos) > 0 {
			o.set("protocols", protos)
			ccs.carry("alpn_protocols")
		} else {
			ccs.fail("alpn_protocols", "Sightline serves h2 and http/1.1 only, got %v", alpn)
		}
	}
	t.commonTLSSkips(ccs)
}

// commonTLSSkips notes the parts of a common TLS context Sightline does
// its own way.
func (t *translator) commonTLSSkips(s *scope) {
	s.skip("tls_params", "Sightline uses Go's TLS versions (1.2 and 1.3) and cipher suites")
	s.skip("key_log", "Sightline writes no TLS key log")
	s.unsafe("custom_handshaker", "Sightline has no custom TLS handshakers")
	s.unsafe("tls_certificate_provider_instance", "Sightline reads certificates from files or inline PEM only")
	s.unsafe("tls_certificate_certificate_provider", "Sightline reads certificates from files or inline PEM only")
	s.unsafe("tls_certificate_certificate_provider_instance", "Sightline reads certificates from files or inline PEM only")
	s.unsafe("custom_tls_certificate_selector", "Sightline serves one certificate per listener")
}

// certificate carries the first certificate of a common TLS context
// (inline or by SDS) into out as cert_file/key_file or cert_pem/key_pem;
// false when there is none.
func (t *translator) certificate(s *scope, common *tlsv3.CommonTlsContext, out *obj) bool {
	found := false
	s.seen["tls_certificates"] = true
	for j, c := range common.GetTlsCertificates() {
		cs := s.elem("tls_certificates", j, c, nil)
		if found {
			cs.skipAll("Sightline serves one certificate; the first is carried")
			continue
		}
		found = t.tlsCertificate(cs, c, out)
	}
	s.seen["tls_certificate_sds_secret_configs"] = true
	for j, sc := range common.GetTlsCertificateSdsSecretConfigs() {
		ss := s.elem("tls_certificate_sds_secret_configs", j, sc, nil)
		if found {
			ss.skipAll("Sightline serves one certificate; the first is carried")
			continue
		}
		sec := t.secret(ss, sc)
		if sec == nil {
			continue
		}
		if sec.GetTlsCertificate() == nil {
			ss.fail("name", "secret %q holds no tls_certificate", sc.GetName())
			continue
		}
		found = t.tlsCertificate(t.open("secrets["+sc.GetName()+"].tls_certificate", sec.GetTlsCertificate(), s.out), sec.GetTlsCertificate(), out)
	}
	return found
}

// secret resolves an SDS reference among the resources given.
func (t *translator) secret(s *scope, sc *tlsv3.SdsSecretConfig) *tlsv3.Secret {
	defer s.done()
	// Where Envoy fetches the secret from: here it is among the resources
	// given (static_resources.secrets, or what ADS sent).
	s.carry("name", "sds_config")
	sec, ok := t.secrets[sc.GetName()]
	if !ok {
		s.fail("name", "no secret named %q", sc.GetName())
		return nil
	}
	if !t.usedSecrets[sc.GetName()] {
		t.usedSecrets[sc.GetName()] = true
		ss := t.top("secrets", sc.GetName(), sec, s.out)
		ss.carry("name", "tls_certificate", "validation_context")
		ss.done()
	}
	return sec
}

// tlsCertificate carries a certificate and its key.
func (t *translator) tlsCertificate(s *scope, c *tlsv3.TlsCertificate, out *obj) bool {
	defer s.done()
	ok := t.dataSource(s, "certificate_chain", c.GetCertificateChain(), out, "cert_file", "cert_pem")
	ok = t.dataSource(s, "private_key", c.GetPrivateKey(), out, "key_file", "key_pem") && ok
	s.unsafe("password", "Sightline reads unencrypted private keys only")
	s.unsafe("pkcs12", "Sightline reads PEM certificates only")
	s.unsafe("private_key_provider", "Sightline reads private keys from files or inline PEM only")
	s.skip("watched_directory", "Sightline reads certificate files again on reload (SIGHUP or --watch)")
	s.skip("ocsp_staple", "Sightline does no OCSP stapling")
	s.skip("signed_certificate_timestamp", "Sightline sends no SCTs")
	s.skip("tls_params", "Sightline uses Go's TLS versions and cipher suites")
	return ok
}

// dataSource carries a DataSource at field f as a file (key file) or
// inline PEM (key pem); false when it is neither.
func (t *translator) dataSource(s *scope, f string, d *corev3.DataSource, out *obj, file, pem string) bool {
	if d == nil {
		s.fail(f, "missing")
		return false
	}
	ds := s.sub(f, d, nil)
	defer ds.done()
	switch {
	case d.GetFilename() != "":
		out.set(file, d.GetFilename())
		ds.carry("filename")
	case d.GetInlineString() != "":
		out.set(pem, d.GetInlineString())
		ds.carry("inline_string")
	case len(d.GetInlineBytes()) > 0:
		out.set(pem, string(d.GetInlineBytes()))
		ds.carry("inline_bytes")
	default:
		ds.fail("specifier", "Sightline reads TLS material from a file or inline only (not environment_variable)")
		ds.seen["environment_variable"] = true
		return false
	}
	ds.skip("watched_directory", "Sightline reads certificate files again on reload (SIGHUP or --watch)")
	return true
}

// upstreamTLS translates a cluster's transport socket into its tls. Envoy
// verifies the upstream's certificate only when a validation context is
// given; without one the translation says insecure_skip_verify: true,
// which is what Envoy does.
func (t *translator) upstreamTLS(s *scope, ts *corev3.TransportSocket, o *obj) {
	defer s.done()
	ctx := &tlsv3.UpstreamTlsContext{}
	cs, tls := tlsContext(s, ts, upstreamTLSType, "clusters", ctx, o)
	if cs == nil {
		return
	}
	defer cs.done()
	if ctx.GetSni() != "" {
		tls.set("sni", ctx.GetSni())
	}
	cs.carry("sni")
	cs.unsafe("auto_host_sni", "Sightline sends the cluster's tls.sni, not the request's host")
	cs.unsafe("auto_sni_san_validation", "Sightline checks the certificate against tls.sni, not the request's host")
	cs.skip("allow_renegotiation", "Go's TLS client does not renegotiate")
	cs.skip("max_session_keys", "Sightline keeps Go's session cache")
	cs.skip("enforce_rsa_key_usage", "Go's TLS client checks key usage itself")
	common := ctx.GetCommonTlsContext()
	if common == nil {
		tls.set("insecure_skip_verify", true)
		return
	}
	ccs := cs.sub("common_tls_context", common, nil)
	defer ccs.done()
	if len(common.GetTlsCertificates()) > 0 || len(common.GetTlsCertificateSdsSecretConfigs()) > 0 {
		t.certificate(ccs, common, tls)
	}
	switch {
	case common.GetValidationContext() != nil:
		vc := common.GetValidationContext()
		t.validationContext(ccs.sub("validation_context", vc, nil), vc, tls)
	case common.GetValidationContextSdsSecretConfig() != nil:
		sc := common.GetValidationContextSdsSecretConfig()
		if sec := t.secret(ccs.sub("validation_context_sds_secret_config", sc, nil), sc); sec != nil {
			if vc := sec.GetValidationContext(); vc != nil {
				t.validationContext(t.open("secrets["+sc.GetName()+"].validation_context", vc, ccs.out), vc, tls)
			} else {
				t.failf(ccs.at("validation_context_sds_secret_config"), "secret %q holds no validation_context", sc.GetName())
			}
		}
	case common.GetCombinedValidationContext() != nil:
		ccs.unsafe("combined_validation_context", "Sightline verifies upstream certificates against a CA file only")
	case common.GetValidationContextType() != nil:
		ccs.unsafe("validation_context_certificate_provider", "Sightline verifies upstream certificates against a CA file only")
		ccs.unsafe("validation_context_certificate_provider_instance", "Sightline verifies upstream certificates against a CA file only")
	default:
		tls.set("insecure_skip_verify", true)
	}
	if alpn := common.GetAlpnProtocols(); len(alpn) > 0 {
		// Sightline offers h2 when the cluster's protocol is http2 and
		// http/1.1 when http1: what these ALPN lists ask for.
		if slices.Contains(alpn, "h2") {
			o.set("protocol", "http2")
		}
		ccs.carry("alpn_protocols")
	}
	t.commonTLSSkips(ccs)
}

// validationContext carries the CA of an upstream validation context.
// Checks Sightline cannot make (pinned hashes, SAN lists, CRLs) make
// the proxy trust certificates Envoy refuses: unsafe to drop.
func (t *translator) validationContext(s *scope, vc *tlsv3.CertificateValidationContext, tls *obj) {
	defer s.done()
	switch {
	case vc.GetTrustedCa() != nil:
		t.dataSource(s, "trusted_ca", vc.GetTrustedCa(), tls, "ca_file", "ca_pem")
	case vc.GetSystemRootCerts() != nil:
		s.carry("system_root_certs")
	default:
		// An empty validation context verifies nothing in Envoy.
		if proto.Size(vc) == 0 {
			tls.set("insecure_skip_verify", true)
		}
	}
	s.unsafe("match_subject_alt_names", "Sightline checks the certificate's names against tls.sni only")
	s.unsafe("match_typed_subject_alt_names", "Sightline checks the certificate's names against tls.sni only")
	s.unsafe("verify_certificate_spki", "Sightline does not pin certificates")
	s.unsafe("verify_certificate_hash", "Sightline does not pin certificates")
	s.unsafe("crl", "Sightline does not check revocation lists")
	s.unsafe("custom_validator_config", "Sightline has no custom certificate validators")
	s.unsafe("ca_certificate_provider_instance", "Sightline reads the CA from a file or inline PEM only")
	s.skip("require_signed_certificate_timestamp", "Sightline does not check SCTs")
	s.skip("allow_expired_certificate", "Sightline refuses expired certificates")
	s.skip("trust_chain_verification", "Sightline verifies the chain")
	s.skip("only_verify_leaf_cert_crl", "Sightline does not check revocation lists")
	s.skip("max_verify_depth", "Sightline verifies chains of any depth")
	s.skip("watched_directory", "Sightline reads the CA again on reload")
	s.skip("suppress_client_ca_list", "Sightline's listeners ask for no client certificate")
}

// tlsContext reads a transport socket that is plaintext or the TLS
// context of type want into ctx, and returns the scope of its typed
// config and o's tls object, which the caller fills; nil when there is
// no TLS to translate (plaintext, or an error reported on s). what names
// the side, in the error for any other transport.
func tlsContext(s *scope, ts *corev3.TransportSocket, want, what string, ctx proto.Message, o *obj) (*scope, *obj) {
	s.carry("name")
	name := typeName(ts.GetTypedConfig(), ts.GetName())
	if name == rawBufferType || name == "envoy.transport_sockets.raw_buffer" {
		s.carry("typed_config")
		return nil, nil
	}
	if name != want {
		s.fail("typed_config", "Sightline's %s speak TLS or plaintext only, not %s", what, name)
		return nil, nil
	}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		s.fail("typed_config", "cannot read the TLS context: %v", err)
		return nil, nil
	}
	cs := s.sub("typed_config", ctx, nil)
	tls := o.child("tls")
	tls.flow = true
	tls.keep = true
	return cs, tls
}
