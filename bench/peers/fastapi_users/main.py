"""The user service as the seed describes it for FastAPI (the reference of bench/run's third
scenario): FastAPI, PyMongo's async client, bcrypt, PyJWT, the {message, response_status,
response_data} envelope. Written from the seed's README for the benchmark, not a product: it serves
the same documents luahost does (bench/run loads them), so it reads `password_hash`, and its token's
`sub` is the user id, which makes `GET /users/{id}` the same two reads by _id that luahost does.

  BENCH_MONGODB_URI, BENCH_DB, BENCH_JWT_SECRET   (environment)
  uvicorn main:app --workers N
"""
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Optional

import bcrypt
import jwt
from bson import ObjectId
from bson.errors import InvalidId
from fastapi import Depends, FastAPI, Form, HTTPException, Query, status
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, Field
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

MONGODB_URI = os.environ.get("BENCH_MONGODB_URI", "mongodb://localhost:27017")
DB_NAME = os.environ.get("BENCH_DB", "mydatabase")
SECRET = os.environ.get("BENCH_JWT_SECRET", "change-me-change-me-change-me-change-me")
ALGORITHM = "HS256"
TOKEN_MINUTES = 30

app = FastAPI()
client = AsyncMongoClient(MONGODB_URI)
users = client[DB_NAME]["users"]
oauth2 = OAuth2PasswordBearer(tokenUrl="login")


def envelope(message, data=None, ok=True, code=200):
    return JSONResponse(status_code=code,
                        content={"message": message, "response_status": ok, "response_data": data})


def serialize(doc):
    return {"id": str(doc["_id"]), "username": doc.get("username"), "userage": doc.get("userage"),
            "role": doc.get("role", "user")}


PUBLIC = {"password_hash": 0, "password": 0}


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=8, max_length=128)
    userage: int = Field(ge=0, le=150)
    role: str = "user"


async def current_user(token: str = Depends(oauth2)):
    try:
        claims = jwt.decode(token, SECRET, algorithms=[ALGORITHM])
        oid = ObjectId(claims["sub"])
    except (jwt.PyJWTError, KeyError, InvalidId):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid token",
                            headers={"WWW-Authenticate": "Bearer"})
    user = await users.find_one({"_id": oid}, PUBLIC)
    if not user:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid token",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


def admin(user=Depends(current_user)):
    if user.get("role") != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Admin access required")
    return user


@app.post("/login")
async def login(username: str = Form(...), password: str = Form(...)):
    user = await users.find_one({"username": username})
    stored = (user or {}).get("password_hash") or (user or {}).get("password") or ""
    if not user or not stored.startswith("$2") or \
            not bcrypt.checkpw(password.encode(), stored.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid credentials")
    exp = datetime.now(timezone.utc) + timedelta(minutes=TOKEN_MINUTES)
    token = jwt.encode({"sub": str(user["_id"]), "exp": exp}, SECRET, algorithm=ALGORITHM)
    return {"access_token": token, "token_type": "bearer"}


@app.post("/users/create", status_code=201)
async def create_user(body: UserCreate, _=Depends(admin)):
    if await users.find_one({"username": body.username}):
        return envelope("Username already registered", None, False, 409)
    hashed = bcrypt.hashpw(body.password.encode(), bcrypt.gensalt()).decode()
    doc = {"username": body.username, "password_hash": hashed, "userage": body.userage,
           "role": body.role}
    res = await users.insert_one(doc)
    doc["_id"] = res.inserted_id
    return envelope("User created successfully", serialize(doc), code=201)


@app.get("/users/")
async def list_users(username: Optional[str] = None, min_age: Optional[int] = None,
                     max_age: Optional[int] = None, skip: int = Query(0, ge=0),
                     limit: int = Query(10, ge=1, le=100), sort_by: str = "username",
                     sort_order: str = "asc", _=Depends(admin)):
    query = {}
    if username:
        query["username"] = {"$regex": re.escape(username), "$options": "i"}
    if min_age is not None or max_age is not None:
        query["userage"] = {}
        if min_age is not None:
            query["userage"]["$gte"] = min_age
        if max_age is not None:
            query["userage"]["$lte"] = max_age
    direction = DESCENDING if sort_order == "desc" else ASCENDING
    cursor = users.find(query, PUBLIC).sort(sort_by, direction).skip(skip).limit(limit)
    items = [serialize(d) async for d in cursor]
    return envelope("Users fetched successfully", items)


@app.get("/users/{user_id}")
async def get_user(user_id: str, user=Depends(current_user)):
    if user.get("role") != "admin" and str(user["_id"]) != user_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Not allowed")
    try:
        oid = ObjectId(user_id)
    except InvalidId:
        return envelope("User not found", None, False, 404)
    doc = await users.find_one({"_id": oid}, PUBLIC)
    if not doc:
        return envelope("User not found", None, False, 404)
    return envelope("User fetched successfully", serialize(doc))


@app.get("/healthz")
async def healthz():
    return {"ok": True}
