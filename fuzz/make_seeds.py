#!/usr/bin/env python3
"""Writes the seed corpus of the `request` fuzz target into seeds/request/ (one file per seed).

Run from fuzz/: python3 make_seeds.py. A seed starting with a space is sent by a peer that
is not an admin (the target picks the peer from each line's first byte: even = stranger).
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "seeds", "request")

def deep(n, inner=b"0"):
    return b"[" * n + inner + b"]" * n

SEEDS = {
    # --- valid requests, every op ---
    "get_basic": b'{"op":"get","user":"alice"}',
    "get_stranger": b' {"op":"get","user":"alice"}',
    "get_lat_long": b'{"id":1,"op":"get","user":"alice","lat":48.8566,"long":2.3522}',
    "get_lon_alias": b'{"id":"x","op":"get","user":"bob","lat":40.7128,"lon":-74.006}',
    "get_at_sea": b'{"op":"get","user":"bob","lat":0.0,"long":-30.0}',
    "get_poles": b'{"op":"get","user":"bob","lat":-90,"long":180}',
    "get_query": b'{"op":"get","user":"alice","query":"cat"}',
    "get_count_nsfw": b'{"op":"get","user":"alice","count":3,"nsfw":true}',
    "get_count_max": b'{"op":"get","user":"dave","count":10,"query":"dog","lat":35.68,"long":139.69}',
    "get_idempotency": b'{"id":"r1","op":"get","user":"alice","query":"dog","idempotency_key":"k-1"}',
    "get_token": b'{"op":"get","user":"alice","token":"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSIsInRpZXIiOiJwcmVtaXVtIn0.c2ln"}',
    "get_generate": b'{"op":"get","user":"alice","generate":true,"query":"monday","inline":true}',
    "get_generate_located": b'{"op":"get","user":"alice","generate":true,"lat":51.5,"long":-0.12,"idempotency_key":"g1"}',
    "topup_positive": b'{"op":"topup","user":"alice","amount":100}',
    "topup_negative_reason": b'{"op":"topup","user":"alice","amount":-5,"reason":"refund #42"}',
    "topup_key_max": b'{"id":[1,2],"op":"topup","user":"carol","amount":1000000000000,"idempotency_key":"pay_123","reason":"evt_1"}',
    "topup_stranger": b' {"op":"topup","user":"mallory","amount":1000}',
    "balance": b'{"op":"balance","user":"alice"}',
    "balance_stranger": b' {"op":"balance","user":"alice"}',
    "history_limit": b'{"op":"history","user":"alice","limit":5}',
    "history_all": b'{"op":"history","user":"alice"}',
    "status": b'{"id":null,"op":"status"}',
    "search": b'{"op":"search","query":"distracted boyfriend","limit":5}',
    "search_nsfw_empty": b'{"op":"search","query":"","nsfw":true,"limit":100}',
    "entitle_until": b'{"op":"entitle","user":"alice","tier":"premium","until":"2099-01-31T00:00:00Z"}',
    "entitle_free": b'{"op":"entitle","user":"alice","tier":"free"}',
    "entitle_stranger": b' {"op":"entitle","user":"eve","tier":"premium"}',
    "audit": b'{"op":"audit"}',
    "reload": b'{"op":"reload"}',
    "reload_stranger": b' {"op":"reload"}',
    # --- sequences (one request per line) ---
    "seq_entitle_generate": b'\n'.join([
        b'{"op":"entitle","user":"pat","tier":"premium"}',
        b'{"op":"topup","user":"pat","amount":50,"idempotency_key":"t-pat"}',
        b'{"op":"get","user":"pat","generate":true,"query":"cat","idempotency_key":"g-pat"}',
        b'{"op":"get","user":"pat","generate":true,"query":"cat","idempotency_key":"g-pat","inline":true}',
        b'{"op":"balance","user":"pat"}',
        b'{"op":"history","user":"pat","limit":3}',
    ]),
    "seq_idempotency": b'\n'.join([
        b'{"op":"get","user":"ida","idempotency_key":"same"}',
        b'{"op":"get","user":"ida","idempotency_key":"same"}',
        b'{"op":"get","user":"ida","query":"dog","idempotency_key":"same"}',
        b'{"op":"topup","user":"ida","amount":1,"idempotency_key":"same"}',
    ]),
    "seq_spend_audit": b'\n'.join([
        b'{"op":"topup","user":"sam","amount":-150}',
        b'{"op":"get","user":"sam"}',
        b'{"op":"topup","user":"sam","amount":-1}',
        b'{"op":"get","user":"sam","count":10}',
        b'{"op":"audit"}',
        b'{"op":"status"}',
    ]),
    # --- broken: encoding and syntax ---
    "invalid_utf8_in_string": b'{"op":"get","user":"\xff\xfe"}',
    "invalid_utf8_bare": b'\xc3\x28\xa0\xa1',
    "bom": b'\xef\xbb\xbf{"op":"status"}',
    "truncated": b'{"op":"get","user":"al',
    "truncated_after_key": b'{"op":"topup","user":"a","amount":',
    "trailing_garbage": b'{"op":"status"} x',
    "trailing_cr": b'{"op":"status"}\r',
    "empty_object": b'{}',
    "not_object_array": b'[]',
    "not_object_null": b'null',
    "not_object_string": b'"get"',
    "deep_arrays_id": b'{"id":' + deep(200) + b',"op":"status"}',
    "deep_arrays_field": b'{"op":"get","user":"a","extra":' + deep(127) + b'}',
    "deep_objects": b'{"op":"status","x":' + b'{"a":' * 130 + b'1' + b'}' * 130 + b'}',
    "raw_control_char": b'{"op":"balance","user":"a\x01b"}',
    # --- broken: numbers ---
    "huge_exponent": b'{"id":1e999,"op":"get","user":"a","lat":1e999,"long":0}',
    "huge_integer_amount": b'{"op":"topup","user":"a","amount":100000000000000000000}',
    "amount_too_big": b'{"op":"topup","user":"a","amount":1000000000001}',
    "amount_zero": b'{"op":"topup","user":"a","amount":0}',
    "amount_float": b'{"op":"topup","user":"a","amount":1.5}',
    "amount_i64_min": b'{"op":"topup","user":"a","amount":-9223372036854775808}',
    "negative_zero": b'{"op":"get","user":"a","lat":-0,"long":-0.0}',
    "nan_strings": b'{"op":"get","user":"a","lat":"NaN","long":"Infinity"}',
    "nan_literal": b'{"op":"get","user":"a","lat":NaN,"long":0}',
    "lat_just_over": b'{"op":"get","user":"a","lat":90.0000001,"long":0}',
    "long_just_under": b'{"op":"get","user":"a","lat":0,"long":-180.0000001}',
    "lat_without_long": b'{"op":"get","user":"a","lat":10}',
    "count_zero": b'{"op":"get","user":"a","count":0}',
    "count_eleven": b'{"op":"get","user":"a","count":11}',
    "count_u32_overflow": b'{"op":"get","user":"a","count":4294967296}',
    "history_limit_zero": b'{"op":"history","user":"a","limit":0}',
    "history_limit_u64_max": b'{"op":"history","user":"a","limit":18446744073709551615}',
    "search_limit_101": b'{"op":"search","query":"x","limit":101}',
    # --- broken: fields ---
    "duplicate_op": b'{"op":"get","op":"topup","user":"a","amount":1}',
    "duplicate_id": b'{"id":1,"id":2,"op":"status"}',
    "duplicate_user": b'{"op":"balance","user":"a","user":"b"}',
    "wrong_types": b'{"op":"get","user":42,"count":"3","nsfw":"yes"}',
    "op_number": b'{"op":7}',
    "op_uppercase": b'{"op":"GET","user":"a"}',
    "unknown_op": b'{"op":"delete_everything","user":"a"}',
    "unknown_op_long": b'{"op":"' + b'x' * 300 + b'"}',
    "missing_user": b'{"op":"get"}',
    "missing_amount": b'{"op":"topup","user":"a"}',
    "empty_user": b'{"op":"get","user":""}',
    "user_escaped_control": b'{"op":"balance","user":"a\\u0000b"}',
    "user_escaped_newline": b'{"op":"get","user":"line\\nbreak"}',
    "user_128_chars": b'{"op":"balance","user":"' + ("\u00e9" * 128).encode() + b'"}',
    "user_129_chars": b'{"op":"balance","user":"' + ("\u00e9" * 129).encode() + b'"}',
    "query_257_chars": b'{"op":"search","query":"' + b'q' * 257 + b'"}',
    "key_empty": b'{"op":"get","user":"a","idempotency_key":""}',
    "key_256_chars": b'{"op":"get","user":"a","idempotency_key":"' + b'k' * 256 + b'"}',
    "reason_501_chars": b'{"op":"topup","user":"a","amount":1,"reason":"' + b'r' * 501 + b'"}',
    "escaped_strings": b'{"op":"search","query":"\\u0063\\u0061t \\"quoted\\" \\\\ \\/ \\ud83d\\ude00"}',
    "lone_surrogates": b'{"id":"\\ud800","op":"get","user":"\\udc00"}',
    "tier_unknown": b'{"op":"entitle","user":"a","tier":"gold"}',
    "until_garbage": b'{"op":"entitle","user":"a","tier":"premium","until":"tomorrow"}',
    "until_past": b'{"op":"entitle","user":"a","tier":"premium","until":"1970-01-01T00:00:00Z"}',
    "until_far": b'{"op":"entitle","user":"a","tier":"premium","until":"9999-12-31T23:59:59.999999999Z"}',
    "until_negative_year": b'{"op":"entitle","user":"a","tier":"premium","until":"-009999-01-01T00:00:00+14:00"}',
    "id_object": b'{"id":{"a":[1,{"b":null}],"a":2},"op":"nope"}',
    "status_extra_fields": b'{"op":"status","verbose":true,"user":7}',
}

def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {OUT}")

if __name__ == "__main__":
    main()
