"""Vendors: the remote-access systems that store copies of passwords (one package per vendor).

`base.py` says what a vendor is (`Target`, `EndpointSettings`, `KindSpec`, `VendorType`);
`http.py` and `config.py` are what the HTTP vendors share; `remotix/` and `sparkview/` are
the built-in ones. rotate/registry.py finds them, and those other packages add.
"""
