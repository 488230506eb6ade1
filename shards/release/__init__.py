"""The official LUPerson release formats: detections pickles, LMDB and keys.pkl, imported and exported."""
