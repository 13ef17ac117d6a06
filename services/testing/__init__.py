"""objvid.testing: synthetic inputs and tiny models for tests, benchmarks and the demo.

Shipped in the wheel only as this explicitly named subpackage; production code never imports it
(the services and the client run without it). ``assets``: the synthetic RGB-D room and sneaker
(``examples/make_assets.py``, ``objvid-client demo``, the client tests); ``depth_model``: random-weight MoGe
networks saved through the real checkpoint path (tests, bench/depth_bench.py); ``gen3c``: small random
files in the upstream GEN3C / Cosmos tokenizer formats (the converter's and the diffusion server's tests).
"""
